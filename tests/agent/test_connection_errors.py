"""The agent and the CLI name the real cause when they cannot work with the server, and take the token
from one environment variable (VOLUMES_TOKEN, or VOLUMES_AGENT_TOKEN) or a file."""
from __future__ import annotations

import http.server
import io
import threading

import pytest
from django.core.management import CommandError, call_command

from tests.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True)]


class _Redirect(http.server.BaseHTTPRequestHandler):
    """What Django's SecurityMiddleware answers with SECURE_SSL_REDIRECT on and no TLS proxy."""

    def _answer(self):
        self.send_response(301)
        self.send_header("Location", f"https://{self.headers['Host']}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def plain_http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def agent(server: str, *args: str) -> str:
    err = io.StringIO()
    call_command("agent_worker", "--server", server, "--once", *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def cli(server: str, *args: str) -> str:
    out = io.StringIO()
    call_command("volume", "-w", "acme", "--server", server, *args, "ls", stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def token(cast):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=cast["admin"]).key


def test_an_unreachable_server_is_named_as_such(db):
    server = f"http://127.0.0.1:{free_port()}"
    for run in (agent, cli):
        with pytest.raises(CommandError) as info:
            run(server, "--token", "x")
        message = str(info.value)
        assert f"cannot reach the server at {server}: connection refused" in message
        assert "storage" not in message and "Settings > Storage" not in message


def test_a_redirect_to_https_says_so_and_how_to_fix_it(plain_http_server):
    for run in (agent, cli):
        with pytest.raises(CommandError) as info:
            run(f"http://{plain_http_server}", "--token", "x")
        message = str(info.value)
        assert f"redirects to https://{plain_http_server}" in message and "SECURE_SSL_REDIRECT" in message
        assert "TLS handshake" not in message and "storage" not in message


def test_a_refused_tls_handshake_is_not_called_unreachable(plain_http_server):
    for run in (agent, cli):
        with pytest.raises(CommandError) as info:
            run(f"https://{plain_http_server}", "--token", "x")
        message = str(info.value)
        assert "TLS handshake with" in message and "does not speak TLS" in message
        assert "cannot reach" not in message


def test_a_wrong_token_is_named(live_server, workspace):
    for run in (agent, cli):
        with pytest.raises(CommandError) as info:
            run(live_server.url, "--token", "not-a-token")
        assert "refused the API token" in str(info.value) and "drf_create_token" in str(info.value)


def test_agent_and_cli_read_volumes_token_or_a_file_and_the_agent_says_what_it_serves(
        live_server, workspace, token, monkeypatch, tmp_path):
    monkeypatch.delenv("VOLUMES_AGENT_TOKEN", raising=False)
    monkeypatch.setenv("VOLUMES_TOKEN", token)
    log = agent(live_server.url)
    assert f"connected to {live_server.url}; serving workspace acme" in log
    cli(live_server.url)  # no error: the CLI took the same variable
    monkeypatch.delenv("VOLUMES_TOKEN")
    monkeypatch.setenv("VOLUMES_AGENT_TOKEN", token)  # the agent's older name still works
    assert "serving workspace acme" in agent(live_server.url)
    monkeypatch.delenv("VOLUMES_AGENT_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(token + "\n")
    assert "serving workspace acme" in agent(live_server.url, "--token-file", str(secret))
    cli(live_server.url, "--token-file", str(secret))
    monkeypatch.setenv("VOLUMES_TOKEN_FILE", str(secret))
    assert "serving workspace acme" in agent(live_server.url)
    monkeypatch.delenv("VOLUMES_TOKEN_FILE")
    with pytest.raises(CommandError, match="VOLUMES_TOKEN"):
        agent(live_server.url)


def test_a_storage_error_from_the_server_keeps_its_reason():
    import requests

    from volumes.agent import error_from_response
    from volumes.exceptions import StorageUnavailable

    response = requests.Response()
    response.status_code = 503
    response._content = b'{"error": "storage_unavailable", "detail": "storage x is unavailable", "reason": "timeout"}'
    response.request = requests.Request("GET", "http://server/api/").prepare()
    error = error_from_response(response)
    assert isinstance(error, StorageUnavailable) and error.reason == "timeout" and error.transient
