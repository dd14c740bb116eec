"""Guards that run before any view parses a request, and the Content-Security-Policy of HTML pages.

- `RequestGuardMiddleware`: NUL in a query string or a form is refused with 400
  (PostgreSQL refuses NUL even in a lookup: it would be a 500 later); anonymous callers may send at most
  VOLUMES_ANONYMOUS_BODY_MAX_BYTES (64 KiB: a login form), refused with 413 before anything is read or
  spooled (CSRF checks and form parsing would otherwise read a 150 MiB body before the login redirect).
- `ContentSecurityPolicyMiddleware`: every HTML answer without a policy of its own gets one: our pages
  load scripts and styles only from our static files (no inline script or style). The admin keeps
  inline styles (never inline scripts); the API docs page (vendored Swagger UI, showing only our own
  schema) needs inline handlers and eval, so it gets a policy that allows them and nothing else extra.
"""
from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import conf

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
          "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
RELAXED_STYLE_PREFIXES = ("/admin/",)
RELAXED = POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
# Swagger UI (vendored, it shows only our schema) evaluates strings and sets inline handlers.
API_DOCS = RELAXED.replace("script-src 'self'", "script-src 'self' 'unsafe-inline' 'unsafe-eval'")


def _refuse(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": code, "detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self.check(request)
        return refused if refused is not None else self.get_response(request)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        meta = request.META
        # An Authorization header counts only where it is checked before the body is read (the API);
        # on a dashboard route the CSRF check would read the body of a caller with a made-up one.
        api = request.path.startswith("/api/")
        anonymous = not request.user.is_authenticated and not (api and meta.get("HTTP_AUTHORIZATION"))
        if anonymous and request.method not in ("GET", "HEAD", "OPTIONS"):
            limit = int(conf.get("ANONYMOUS_BODY_MAX_BYTES"))
            length = meta.get("CONTENT_LENGTH", "").strip()
            if meta.get("HTTP_TRANSFER_ENCODING") and not length:
                return _refuse(request, 411, "length_required", "log in first; anonymous requests need a Content-Length")
            if length and (not length.isdigit() or int(length) > limit):
                return _refuse(request, 413, "limit_exceeded",
                               f"log in first: requests without a login may carry at most {limit:,} bytes")
        if _has_nul(request.GET):  # (paths with NUL are refused by the views: 400 invalid_path or 404)
            return _refuse(request, 400, "invalid", "the request contains a NUL character, which no name or value may hold")
        form = request.content_type == "application/x-www-form-urlencoded" or (
            request.content_type == "multipart/form-data" and not api)  # the API parses its own uploads
        if form and request.method == "POST":
            if _has_nul(request.POST):
                return _refuse(request, 400, "invalid", "the form contains a NUL character, which no value may hold")
        return None


def _has_nul(data) -> bool:
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in data.lists())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and \
                response.get("Content-Type", "").startswith("text/html"):
            if request.path.startswith("/api/docs/"):
                response["Content-Security-Policy"] = API_DOCS
            else:
                relaxed = request.path.startswith(RELAXED_STYLE_PREFIXES)
                response["Content-Security-Policy"] = RELAXED if relaxed else POLICY
        return response
