"""System checks with stable ids."""
from django.core import checks

from . import conf


@checks.register()
def check_volumes_settings(app_configs, **kwargs):
    errors = []
    try:
        conf.edition()
    except ValueError as exc:
        errors.append(checks.Error(str(exc), id="volumes.E001"))
    ttl, renew = conf.get("LEASE_TTL"), conf.get("LEASE_RENEW_INTERVAL")
    if renew * 2 > ttl:
        errors.append(
            checks.Error(
                f"VOLUMES_LEASE_RENEW_INTERVAL ({renew}s) must be at most half of VOLUMES_LEASE_TTL ({ttl}s), "
                "or a slow renewal would let the lease expire under a running job.",
                id="volumes.E002",
            )
        )
    return errors
