"""The agent's HTTP client: one workspace of the server, the API token, retries, and the server's
answers turned back into the domain's errors with causes an operator can act on."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import exceptions
from ..exceptions import VolumesError

CHUNK = 1024 * 1024
TIMEOUT = (10, 120)  # connect, read (seconds)


def _error_classes() -> dict[str, type[VolumesError]]:
    found: dict[str, type[VolumesError]] = {}
    pending = [VolumesError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def error_from_response(response: requests.Response) -> VolumesError:
    """The domain error a JSON error answer stands for, with its message and details."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error", "")
    message = str(body.get("detail") or response.reason or f"HTTP {response.status_code}")
    details = {k: v for k, v in body.items() if k not in ("error", "detail")}
    cls = _error_classes().get(code)
    if cls is None:
        cls = {
            401: exceptions.PermissionDenied, 403: exceptions.PermissionDenied, 404: exceptions.NotFound,
            409: exceptions.Conflict, 413: exceptions.LimitExceeded,
        }.get(response.status_code, VolumesError)
        if response.status_code >= 500:
            return exceptions.ServerUnavailable(
                f"the server answered {response.status_code} to {response.request.method} "
                f"{response.url}: {message[:300]}", "server_error"
            )
        if response.status_code == 401 or (response.status_code == 403 and not code.startswith("permission")):
            return exceptions.TokenRefused(
                f"the server at {_origin(response.url)} refused the API token ({message}); check --token, "
                f"VOLUMES_TOKEN or the token file, or create a token with `manage.py drf_create_token USER`"
            )
    error = cls.__new__(cls)
    VolumesError.__init__(error, message, **details)
    for key, value in details.items():
        if not hasattr(error, key):
            setattr(error, key, value)
    if isinstance(error, exceptions.StorageUnavailable):
        if details.get("reason") in error.REASONS:
            error.reason = details["reason"]  # so the agent can tell a blip from a refusal
        error.storage = str(details.get("storage") or "")  # absent for callers who may not see storage details
        error.detail = str(details.get("cause") or message)
    error.status = response.status_code
    return error


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def connection_error(server: str, exc: Exception) -> exceptions.ServerUnavailable:
    """The real cause of a failed connection to the server, in words an operator can act on."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if server.startswith("https://") and ("WRONG_VERSION_NUMBER" in text or "wrong version number" in text
                                              or "record layer failure" in text or "packet length" in text):
            why = "the server does not speak TLS on that port; use http:// or put a TLS proxy in front"
        elif "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            why = ("its certificate is not trusted (self-signed or an unknown CA); set REQUESTS_CA_BUNDLE to the "
                   "CA file")
        else:
            why = "the TLS handshake was refused"
        return exceptions.ServerUnavailable(f"TLS handshake with {server} failed: {why} ({connection_reason(text)})")
    if isinstance(exc, requests.exceptions.Timeout):
        return exceptions.ServerUnavailable(f"{server} did not answer in time ({connection_reason(text)})", "timeout")
    return exceptions.ServerUnavailable(f"cannot reach the server at {server}: {connection_reason(text)}; check the URL "
                                        "and that the server runs")


def connection_reason(text: str) -> str:
    for reason in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "Network is unreachable", "timed out", "Connection reset", "Connection aborted",
                   "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED", "certificate verify failed"):
        if reason.lower() in text.lower():
            return reason.lower().replace("_", " ")
    return text[:200]


def https_redirect_error(server: str, response: requests.Response) -> exceptions.ServerUnavailable:
    location = response.headers.get("Location", "")
    return exceptions.ServerUnavailable(
        f"the server at {server} redirects to {_origin(location) if location else 'https'} (it requires https: "
        f"SECURE_SSL_REDIRECT is on). Use --server {_origin(location) if location.startswith('https') else 'https://...'} "
        "behind a TLS proxy, or, with no TLS proxy yet, start the server with SECURE_SSL_REDIRECT=false "
        "(docs/scaling.md, 'No TLS proxy yet')", "other")


def resolve_token(given: str | None = None, token_file: str | None = None) -> str:
    """The API token: --token, else --token-file, else VOLUMES_TOKEN, VOLUMES_TOKEN_FILE, then
    VOLUMES_AGENT_TOKEN (the agent's older name). A file holds the token on its first line; it
    keeps the token out of `ps` and shell history."""
    import os

    if given:
        return given.strip()
    path = token_file or (None if os.environ.get("VOLUMES_TOKEN") else os.environ.get("VOLUMES_TOKEN_FILE"))
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.readline().strip()
        except OSError as exc:
            raise exceptions.TokenRefused(f"cannot read the token file {path!r}: {exc.strerror}") from None
        if not token:
            raise exceptions.TokenRefused(f"the token file {path!r} is empty")
        return token
    return (os.environ.get("VOLUMES_TOKEN") or os.environ.get("VOLUMES_AGENT_TOKEN") or "").strip()


class ApiClient:
    """A requests session against one workspace of the server, with the token and retries.

    Connection errors (nothing was sent) are retried with backoff for every method;
    transfers retry themselves with a fresh body."""

    def __init__(self, server: str, token: str, workspace: str, retries: int = 5) -> None:
        self.server = server.rstrip("/")
        self.workspace = workspace
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})
        retry = Retry(total=retries, connect=retries, read=0, status=0, other=0, backoff_factor=0.3,
                      allowed_methods=None, raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        if path.startswith("/"):  # not under a workspace, e.g. "/workspaces/"
            return f"{self.server}/api{path}"
        return f"{self.server}/api/w/{quote(self.workspace, safe='')}/{path}"

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        # Never follow redirects: a POST would turn into a GET, and an http -> https redirect of a
        # server without TLS would surface as a baffling TLS error. Say what happened instead.
        kwargs.setdefault("allow_redirects", False)
        try:
            response = self.session.request(method, self.url(path), **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise connection_error(self.server, exc) from exc
        if response.is_redirect:
            location = response.headers.get("Location", "")
            if location.startswith("https://") and self.server.startswith("http://"):
                raise https_redirect_error(self.server, response)
            raise exceptions.ServerUnavailable(
                f"the server at {self.server} answered {response.status_code} redirecting to {location[:200]!r}; "
                "give --server the URL it redirects to", "other")
        if response.status_code not in ok:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None


def url_segment(name: str) -> str:
    return quote(name, safe="")

