"""Operators' endpoints, outside the API: /healthz (load balancers, run.sh) and /metrics (Prometheus)."""
from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .access import monitoring_allowed
from .health import health_checks


@never_cache
@require_GET
def healthz(request):
    """200 {"status": "ok"} when the database, the broker and every volume storage answer, else 503
    {"status": "not ok"}; staff, the monitoring token and allowed networks also get each check."""
    checks = health_checks()
    ok = all(c.ok for c in checks)
    body: dict = {"status": "ok" if ok else "not ok"}
    if monitoring_allowed(request):
        body["checks"] = {c.name: c.as_dict() for c in checks}
    return JsonResponse(body, status=200 if ok else 503)


@never_cache
@require_GET
def metrics(request):
    """The Prometheus text format, for the monitoring token or an allowed network."""
    if not monitoring_allowed(request):
        return JsonResponse(
            {"error": "forbidden", "detail": "metrics need Authorization: Bearer <VOLUMES_MONITORING_TOKEN> "
             "or an address in VOLUMES_MONITORING_ALLOW_NETWORKS"}, status=403)
    from .metrics import render

    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
