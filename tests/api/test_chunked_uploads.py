"""Uploads without a Content-Length (Transfer-Encoding: chunked) never store an empty file.

A server that decodes chunked bodies and says so (`wsgi.input_terminated`, gunicorn and most WSGI
servers) gets the body streamed with the per-file limit enforced; a server that does not (Django's
own runserver and the live server here) answers 411 Length Required and leaves the file as it was.
Tested with real curl against pytest-django's live server, on the API and the dashboard.
"""
from __future__ import annotations

import io
import json
import subprocess

import pytest
from django.test.client import ClientHandler
from rest_framework.authtoken.models import Token

from volumes.services import files

from .helpers import seed

V = "/api/w/acme/volumes/training-data/"
D = "/w/acme/volumes/training-data/"
DATA = bytes(range(256)) * 4096 * 3  # 3 MiB


def curl(*args: str) -> tuple[int, bytes]:
    out = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True,
                         timeout=60, check=True).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def content(volume, path: str) -> bytes:
    volume.refresh_from_db()
    return b"".join(files.open_file(volume, files.entry_at(volume, path)))


@pytest.fixture
def existing(volume, cast):
    seed(volume, {"data.bin": b"keep me"}, user=cast["owner"])
    return volume


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(DATA)
    return path


def test_a_chunked_api_upload_over_an_existing_file_is_refused_with_411_not_stored_empty(
        live_server, existing, cast, payload):
    token = Token.objects.create(user=cast["owner"]).key
    code, body = curl("-X", "PUT", "--data-binary", f"@{payload}", "-H", "Transfer-Encoding: chunked",
                      "-H", f"Authorization: Token {token}", "-H", "Content-Type: application/octet-stream",
                      f"{live_server.url}{V}files/data.bin")
    assert code == 411, body
    assert json.loads(body)["error"] == "length_required"
    assert content(existing, "data.bin") == b"keep me"
    code, body = curl("-X", "PUT", "--data-binary", f"@{payload}", "-H", "Transfer-Encoding: chunked",
                      "-H", f"Authorization: Token {token}", f"{live_server.url}{V}files/new.bin")
    assert code == 411, body
    existing.refresh_from_db()
    assert "new.bin" not in files.manifest_of(existing).entries
    # The same file with its length goes through.
    code, body = curl("-X", "PUT", "--data-binary", f"@{payload}", "-H", f"Authorization: Token {token}",
                      f"{live_server.url}{V}files/data.bin")
    assert code == 200, body
    assert json.loads(body)["size"] == len(DATA) and content(existing, "data.bin") == DATA


def _dashboard_cookies(client, live_server) -> list[str]:
    csrf = "a" * 32
    return ["-b", f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}", "-H", f"X-CSRFToken: {csrf}",
            "-H", f"Referer: {live_server.url}/"]


def test_a_chunked_dashboard_upload_is_refused_with_411_raw_and_multipart(live_server, existing, cast, payload):
    from django.test import Client

    client = Client()
    client.force_login(cast["owner"])
    auth = _dashboard_cookies(client, live_server)
    code, body = curl("-X", "POST", "--data-binary", f"@{payload}", "-H", "Transfer-Encoding: chunked",
                      "-H", "Content-Type: application/octet-stream", *auth,
                      f"{live_server.url}{D}files/upload/?path=data.bin")
    assert code == 411, body
    assert json.loads(body)["error"] == "length_required"
    code, body = curl("-F", f"files=@{payload};filename=data.bin", "-H", "Transfer-Encoding: chunked", *auth,
                      f"{live_server.url}{D}files/upload/")
    assert code == 411, body
    assert content(existing, "data.bin") == b"keep me"
    # With a length, the raw upload stores the whole body.
    code, body = curl("-X", "POST", "--data-binary", f"@{payload}", "-H", "Content-Type: application/octet-stream",
                      *auth, f"{live_server.url}{D}files/upload/?path=data.bin")
    assert code == 200, body
    assert content(existing, "data.bin") == DATA


def _wsgi_put(url: str, body: bytes, token: str, terminated: bool, method: str = "PUT") -> tuple[int, bytes]:
    """A request as a chunked-decoding WSGI server hands it over: no CONTENT_LENGTH, the decoded body."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": url.partition("?")[0], "QUERY_STRING": url.partition("?")[2],
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver", "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_AUTHORIZATION": f"Token {token}",
        "CONTENT_TYPE": "application/octet-stream", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    if terminated:
        environ["wsgi.input_terminated"] = True
    response = ClientHandler(enforce_csrf_checks=False)(environ)  # a WSGIRequest, without closing connections
    return response.status_code, response.content


@pytest.mark.django_db
def test_a_server_that_decodes_chunks_gets_the_body_streamed_with_the_limit(existing, cast, settings):
    token = Token.objects.create(user=cast["owner"]).key
    code, body = _wsgi_put(V + "files/data.bin", DATA, token, terminated=True)
    assert code == 200, body
    assert json.loads(body)["size"] == len(DATA) and content(existing, "data.bin") == DATA
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1024 * 1024}
    code, body = _wsgi_put(V + "files/data.bin", DATA + b"x", token, terminated=True)
    assert code == 413, body
    assert content(existing, "data.bin") == DATA
    code, body = _wsgi_put(V + "files/data.bin", b"", token, terminated=False)
    assert code == 411, body
