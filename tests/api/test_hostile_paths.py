"""Hostile paths against every file endpoint: always a JSON 400, never a 500, never a byte outside the volume.

Sentinel files sit just outside the volume's storage prefix (in the storage root, the workspace
prefix, a sibling volume whose name shares the prefix) and in the worker cache; the whole tree
is compared byte for byte and by mtime before and after.
"""
import http.client
import os
from urllib.parse import unquote, urlsplit

import pytest

from volumes.models import Volume
from volumes.services.volumes import volume_create

from .helpers import put_file, seed

V = "/api/w/acme/volumes/training-data/"

# As sent on the wire (the server decodes %XX once, like any WSGI server).
HOSTILE = [
    "..",
    "../sentinel.txt",
    "../../sentinel.txt",
    "../../../../../../etc/passwd",
    "a/../../sentinel.txt",
    "a/../b",
    "./../sentinel.txt",
    "%2e%2e",
    "%2e%2e/sentinel.txt",
    "%2E%2E%2Fsentinel.txt",
    "..%2fsentinel.txt",
    "%252e%252e/sentinel.txt",
    "%252e%252e%252fsentinel.txt",
    "a%252f..%252f..%252fsentinel.txt",
    "%25252e%25252e/sentinel.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "//etc/passwd",
    "..\\..\\sentinel.txt",
    "%5c..%5csentinel.txt",
    "a\\b",
    "%255c..%255csentinel.txt",
    "a%00b",
    "sentinel.txt%00.png",
    "a%2500b",
    "%c0%ae%c0%ae/sentinel.txt",
    "x" * 256,
    "a/" + "y" * 300 + "/b",
    "/".join(["abcd"] * 1000),
    "a%0a../b",
]


def _snapshot(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content = open(full, "rb").read() if os.path.isfile(full) and not os.path.islink(full) else None
            found[full] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return found


@pytest.fixture
def guarded(volume, cast, storage_root, cache_root, tmp_path):
    seed(volume, {"data.bin": b"inside", "a/b": b"ab"}, user=cast["owner"])
    sibling = volume_create(volume.workspace, "training-data-x", owner=cast["owner"])  # shares the prefix text
    seed(sibling, {"sentinel.txt": b"sibling"}, user=cast["owner"])
    for place in [storage_root, storage_root / "volumes", storage_root / "volumes" / "acme", cache_root, tmp_path]:
        place.mkdir(parents=True, exist_ok=True)
        (place / "sentinel.txt").write_bytes(b"do not touch")
    before = _snapshot(tmp_path)
    volume.refresh_from_db()
    yield volume
    assert _snapshot(tmp_path) == before
    assert Volume.objects.get(pk=volume.pk).generation == volume.generation


def _requests(api, raw):
    yield "GET file", api.get(V + "files/" + raw)
    yield "GET folder", api.get(V + "files/" + raw + "/")
    yield "HEAD file", api.head(V + "files/" + raw)
    yield "PUT", put_file(api, "acme", "training-data", raw, b"evil")
    yield "DELETE", api.delete(V + "files/" + raw)
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return  # not text once decoded: only reachable through a URL
    yield "mkdir", api.post(V + "folders/", {"path": decoded}, format="json")
    yield "move to", api.post(V + "move/", {"src": "data.bin", "dst": decoded}, format="json")
    yield "move from", api.post(V + "move/", {"src": decoded, "dst": "moved"}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("raw", HOSTILE)
def test_a_hostile_path_is_refused_with_400_and_touches_nothing(client_for, guarded, raw):
    api = client_for("admin")
    for action, response in _requests(api, raw):
        assert response.status_code == 400, (action, raw, response.status_code, getattr(response, "content", b""))
        if action != "HEAD file":
            assert response.json()["error"] in ("invalid_path", "error"), (action, raw, response.json())


@pytest.mark.django_db
def test_ordinary_odd_names_still_work(client_for, volume):
    api = client_for("owner")
    for name in ["…dots…", "a..b", "..a", "b..", "space name.txt", "ünïcödé/ファイル.txt", "50%off.txt", "-rf"]:
        response = put_file(api, "acme", "training-data", name.replace("%", "%25"), b"ok")
        assert response.status_code == 201, (name, response.json())
        assert api.get(V + "files/" + name.replace("%", "%25")).status_code == 200, name


@pytest.mark.django_db(transaction=True)
def test_the_real_http_server_does_not_normalise_dot_segments_before_the_check(live_server, cast, guarded):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=cast["admin"]).key
    host = urlsplit(live_server.url)
    for raw in ["../../sentinel.txt", "a/../../sentinel.txt", "%2e%2e/%2e%2e/sentinel.txt", "%252e%252e/sentinel.txt",
                "..%5c..%5csentinel.txt"]:
        for method in ["GET", "PUT"]:
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
            conn.request(method, V + "files/" + raw, body=b"evil" if method == "PUT" else None,
                         headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            assert response.status == 400, (method, raw, response.status, response.read()[:200])
            conn.close()
