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
    from .runner import network

    try:
        network.check_mode(conf.get("SANDBOX_NETWORK"))
        network.parse_networks(conf.get("SANDBOX_ALLOW_NETWORKS"))
    except network.NetworkUnavailable as exc:
        errors.append(checks.Error(str(exc), id="volumes.E003"))
    for name in sorted(set(conf.get("JOB_ENV_ALLOW")) & conf.WORKER_SECRETS):
        errors.append(checks.Error(
            f"VOLUMES_JOB_ENV_ALLOW names {name}, one of the worker's credentials, which jobs must never see "
            "(workers withhold it); remove it from VOLUMES_JOB_ENV_ALLOW, and give a job that needs a credential "
            "one of its own under another name",
            id="volumes.E004"))
    errors += _sandbox_warnings()
    return errors


def _sandbox_warnings() -> list:
    """Settings this machine cannot honour: every affected job would fail (never run less isolated)."""
    import os

    from .runner import network, sandbox

    warnings = []
    if conf.get("SANDBOX_ALL"):
        try:
            sandbox.nsjail_binary()
        except sandbox.SandboxUnavailable as exc:
            warnings.append(checks.Warning(
                f"VOLUMES_SANDBOX_ALL is on but this machine cannot run the sandbox ({exc}); every job it "
                "runs will fail", id="volumes.W001"))
    if conf.get("SANDBOX_NETWORK") == "internet":
        try:
            if os.geteuid() != 0:
                raise network.NetworkUnavailable("the worker is not root")
            for tool in ("ip", "nft", "pasta"):
                network._tool(tool)
        except network.NetworkUnavailable as exc:
            warnings.append(checks.Warning(
                f"VOLUMES_SANDBOX_NETWORK=internet cannot work on this machine ({exc}); every sandboxed job "
                "it runs will fail", id="volumes.W002"))
    return warnings
