"""Who may see inside: /healthz details and /metrics."""
from __future__ import annotations

import hmac
import ipaddress

from .. import conf


def _networks() -> list:
    networks = []
    for item in conf.get("MONITORING_ALLOW_NETWORKS") or ():
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            continue  # checks.py reports it at start-up
    return networks


def monitoring_allowed(request) -> bool:
    """Staff users, callers with `Authorization: Bearer <VOLUMES_MONITORING_TOKEN>`, and addresses in
    VOLUMES_MONITORING_ALLOW_NETWORKS (REMOTE_ADDR: behind a proxy that is the proxy's address)."""
    token = conf.get("MONITORING_TOKEN") or ""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _networks())
