"""One DRF exception handler: every VolumesError becomes JSON with its code, message and status."""
from __future__ import annotations

from django.core.exceptions import SuspiciousOperation
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import VolumesError, public_error
from ..permissions import sees_storage


def exception_handler(exc, context):
    if isinstance(exc, VolumesError):
        request = context.get("request")
        ws = (context.get("kwargs") or {}).get("ws")
        message, details = public_error(exc, lambda: sees_storage(getattr(request, "user", None), ws))
        body = {"error": exc.code, "detail": message}
        body.update({k: v for k, v in details.items() if isinstance(v, (str, int, float, bool))})
        return Response(body, status=exc.status)
    if isinstance(exc, SuspiciousOperation):
        return Response({"error": "invalid_path", "detail": str(exc)}, status=400)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": getattr(exc, "default_code", "error"), "detail": str(response.data["detail"])}
    return response
