"""Hostile input: annotations, volume names, mount paths, API and dashboard file paths, special files
in a mount, forged agent requests, stale and borrowed agent rights, oversized and sparse files, many-range
downloads.

Every case must end in a clear error (a 4xx, or the product's own exception) or in the documented
policy (links kept as links, hard links as files, FIFOs/sockets/devices skipped with a warning),
never in a 5xx, and nothing outside the volume may change: sentinel files sit in the storage root,
the workspace prefix, a sibling volume whose name shares the prefix, next to the storage root, in
the cache root and in a sibling folder of the cache root, and are compared byte for byte afterwards.

Card figures (suite "hostile"): cases passed, 5xx count, outside touches.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import socket
import stat
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.helpers import checkout
from tests.reliability import hostile_cases as cases
from tests.reliability.hostile_cases import LIMIT, Tally, sha, snapshot, touched
from tests.reliability.report import figure
from volumes import annotations
from volumes.storage.keys import clean_path
from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import DIR, FILE, LINK
from volumes.engine.remote import DirectRemote
from volumes.exceptions import AnnotationError, InvalidName, InvalidPath, LimitExceeded
from volumes.models import Volume, VolumeCommit
from volumes.services import files
from volumes.services.jobs import job_submit
from volumes.services.volumes import volume_create
from volumes.storage.keys import blob_key, manifest_key, safe_relpath, volume_prefix

SUITE = "hostile"
TALLY = Tally()
V = "/api/w/acme/volumes/training-data/"
D = "/w/acme/volumes/training-data/"


@pytest.fixture(scope="session", autouse=True)  # pytest-django may split this module's tests in two runs
def report_card():
    yield
    total = TALLY.passed + len(TALLY.failures)
    figure(SUITE, "cases passed", TALLY.passed, unit=f"of {total}", target=">= 60 and all",
           ok=TALLY.passed >= 60 and not TALLY.failures)
    figure(SUITE, "5xx responses (or unexpected exceptions)", TALLY.server_errors, target="0",
           ok=TALLY.server_errors == 0)
    figure(SUITE, "outside touches", TALLY.outside_touches, target="0", ok=TALLY.outside_touches == 0)


def no_failures(group: str) -> None:
    failed = TALLY.failures_of(group)
    assert not failed, "\n".join(failed)


def send(request):
    """Run one request; a raised exception or a 5xx counts as a server error (status 599 for a raise)."""
    try:
        response = request()
    except Exception as exc:  # noqa: BLE001 - any escape is what we count
        TALLY.server_errors += 1
        return _Raised(exc)
    if response.status_code >= 500:
        TALLY.server_errors += 1
    return response


class _Raised:
    status_code = 599

    def __init__(self, exc):
        self.content = repr(exc).encode()

    def json(self):
        return {}


def seed(volume, contents: dict[str, bytes], user=None) -> None:
    for path, data in contents.items():
        files.file_put(volume, path, io.BytesIO(data), user=user)


@pytest.fixture
def api(cast):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(name: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=cast[name])[0].key}")
        return client

    return make


@pytest.fixture
def dashboard(cast):
    client = Client()
    client.force_login(cast["owner"])
    return client


@pytest.fixture
def fence(workspace, cast, volume, storage_root, cache_root, tmp_path):
    """The volume 'training-data' with two files, and sentinels all around it; on teardown every
    entry outside the volume's own storage prefix and cache folder must be byte-identical."""
    seed(volume, {"data.bin": b"inside", "a/b.txt": b"ab"}, user=cast["owner"])
    sibling = volume_create(workspace, "training-data-x", owner=cast["owner"])  # shares the prefix text
    seed(sibling, {"sentinel.txt": b"sibling secret"}, user=cast["owner"])
    (tmp_path / "cache-sibling").mkdir()
    for place in [storage_root, storage_root / "volumes", storage_root / "volumes" / "acme", cache_root,
                  tmp_path / "cache-sibling"]:
        (place / "sentinel.txt").write_bytes(b"do not touch")
    (tmp_path / "next-to-storage-root.txt").write_bytes(b"do not touch")
    cache_root.chmod(0o700)  # a worker keeps its cache root private
    own = [storage_root / "volumes" / "acme" / "training-data", cache_root / "acme", cache_root / "fresh",
           tmp_path / "scratch"]
    before = snapshot(tmp_path, own)
    volume.refresh_from_db()
    yield volume
    changed = touched(before, snapshot(tmp_path, own))
    TALLY.outside_touches += len(changed)
    assert not changed, changed


def generation_of(volume) -> int:
    return Volume.objects.get(pk=volume.pk).generation


# 1. Annotations (pure) --------------------------------------------------------------------------

def test_hostile_annotations_are_refused_with_the_line():
    for name, lines, language, args in cases.ANNOTATION_CASES:
        script = "\n".join(line.replace("{c}", annotations.LANGUAGES[language]) for line in lines)
        script += "\ndef main():\n    pass\n"
        try:
            annotations.resolve(annotations.parse(script, language), "acme", args)
        except AnnotationError as exc:
            TALLY.case("annotations", name, exc.line >= 1 and str(exc).startswith(f"line {exc.line}: "), exc)
        except Exception as exc:  # noqa: BLE001
            TALLY.server_errors += 1
            TALLY.case("annotations", name, False, f"raised {exc!r}, not AnnotationError")
        else:
            TALLY.case("annotations", name, False, "accepted")
    no_failures("annotations")


def test_percent_encoded_mount_paths_stay_literal_inside_the_job_folder():
    parsed = annotations.parse("# volume: vol-a %2e%2e/%2e%2e/etc\n", "python")
    TALLY.case("annotations", "percent-encoded mount path is never decoded",
               parsed.volumes[0].mount_path == "%2e%2e/%2e%2e/etc", parsed.volumes[0].mount_path)
    no_failures("annotations")


SCRIPT_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
ANNOTATION_LINES = st.lists(
    st.tuples(st.sampled_from(["# ", "// ", "#", "  # ", "-- "]),
              st.sampled_from(["volume: ", "volumes: ", "Volume:", "sandbox", "sandbox ", "volume:"]),
              SCRIPT_TEXT),
    max_size=12,
).map(lambda rows: "\n".join("".join(row) for row in rows))


def test_property_the_annotation_parser_raises_only_annotation_errors():
    @settings(max_examples=150, deadline=None, database=None)
    @given(text=st.one_of(SCRIPT_TEXT, ANNOTATION_LINES), language=st.sampled_from(sorted(annotations.LANGUAGES)),
           args=st.dictionaries(st.sampled_from(["a", "v", "x"]), st.one_of(st.text(max_size=20), st.integers())))
    def check(text, language, args):
        try:
            annotations.resolve(annotations.parse(text, language), "acme", args)
        except AnnotationError:
            pass

    check()
    TALLY.case("properties", "annotation parser raises only AnnotationError", True)


ANY_TEXT = st.text(max_size=80) | st.lists(
    st.sampled_from(["..", ".", "", "a", "%2e%2e", "\\", "\x00", "\u2024\u2024", "\uff0f", "/", "~", "b" * 256]),
    max_size=8,
).map("/".join)


def test_property_paths_resolve_only_beneath_the_volume_prefix_and_the_cache_root():
    prefix = volume_prefix("acme", "training-data")
    cache_tree = "/cache/acme/training-data/tree"

    @settings(max_examples=300, deadline=None, database=None)
    @given(raw=ANY_TEXT)
    def check(raw):
        for resolver in (safe_relpath, clean_path):
            try:
                clean = resolver(raw)
            except InvalidPath:
                continue
            key = posixpath.normpath(prefix + "files/" + clean)
            local = os.path.normpath(os.path.join(cache_tree, clean))
            assert key.startswith(prefix) and local.startswith(cache_tree + "/"), (raw, clean)
            assert ".." not in clean.split("/") and not clean.startswith("/")
        for make in (lambda: manifest_key(prefix, raw), lambda: volume_prefix("acme", raw)):
            try:
                key = make()
            except InvalidName:
                continue
            assert key.startswith("volumes/acme/") and posixpath.normpath(key) == key.rstrip("/"), (raw, key)
            assert ".." not in key.split("/")

    check()
    TALLY.case("properties", "paths resolve only beneath the volume prefix and the cache root", True)


# 2. Volume names ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_hostile_volume_names_are_refused_by_the_api_and_the_dashboard(fence, api, dashboard):
    admin = api("admin")
    count = Volume.objects.count()
    for name, raw, expected in cases.VOLUME_NAME_CASES:
        created = send(lambda: admin.post("/api/w/acme/volumes/", {"name": raw}, format="json"))
        form = send(lambda: dashboard.post("/w/acme/assets/volumes/new/", {"name": raw}, HTTP_HX_REQUEST="true"))
        looked_up = send(lambda: admin.get(f"/api/w/acme/volumes/{quote(raw, safe='')}/"))
        page = send(lambda: dashboard.get(f"/w/acme/volumes/{quote(raw, safe='')}/"))
        lookup_ok = looked_up.status_code == 404 or (expected == 409 and looked_up.status_code == 200)
        page_ok = page.status_code == 404 or (expected == 409 and page.status_code == 200)
        form_ok = form.status_code == (400 if "\x00" in raw else 422)  # NUL in any form: 400 from the guard
        TALLY.case("names", name, created.status_code == expected and form_ok and lookup_ok
                   and page_ok and Volume.objects.count() == count,
                   (created.status_code, form.status_code, looked_up.status_code, page.status_code))
    no_failures("names")


# 3. API file paths --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_hostile_api_paths_are_refused_with_400(fence, api):
    admin = api("admin")
    generation = generation_of(fence)
    for name, raw in cases.API_PATH_CASES:
        statuses = [
            send(lambda: admin.get(V + "files/" + raw)).status_code,
            send(lambda: admin.generic("PUT", V + "files/" + raw, b"evil",
                                       content_type="application/octet-stream")).status_code,
            send(lambda: admin.delete(V + "files/" + raw)).status_code,
        ]
        TALLY.case("api paths", name, statuses == [400, 400, 400] and generation_of(fence) == generation, statuses)
    no_failures("api paths")


@pytest.mark.django_db
def test_lookalike_names_are_kept_as_one_literal_name(fence, api):
    admin = api("admin")
    for name, raw in cases.LOOKALIKE_NAMES:
        put = send(lambda: admin.generic("PUT", V + "files/" + quote(raw), b"literal",
                                         content_type="application/octet-stream"))
        fence.refresh_from_db()
        stored = files.manifest_of(fence).entries
        got = send(lambda: admin.get(V + "files/" + quote(raw)))
        TALLY.case("lookalikes", name, put.status_code == 201 and raw in stored and stored[raw].type == FILE
                   and got.status_code == 200 and b"".join(got.streaming_content) == b"literal",
                   (put.status_code, got.status_code, sorted(stored)))
    no_failures("lookalikes")


@pytest.mark.django_db
def test_a_deep_tree_within_the_limits_works_and_one_past_them_is_refused(fence, api):
    admin = api("admin")
    deep = "/".join(["d"] * 200) + "/leaf.txt"  # 200 folders, 409 bytes
    put = send(lambda: admin.generic("PUT", V + "files/" + deep, b"deep", content_type="application/octet-stream"))
    listed = send(lambda: admin.get(V + "files/" + deep.rpartition("/")[0] + "/"))
    TALLY.case("deep trees", "200 nested folders", put.status_code == 201 and listed.status_code == 200
               and [e["name"] for e in listed.json()["entries"]] == ["leaf.txt"], (put.status_code, listed.status_code))
    too_deep = "/".join(["e"] * 2100)  # 4,199 bytes
    refused = send(lambda: admin.generic("PUT", V + "files/" + too_deep, b"x",
                                         content_type="application/octet-stream"))
    mkdir = send(lambda: admin.post(V + "folders/", {"path": too_deep}, format="json"))
    TALLY.case("deep trees", "2,100 nested folders (over 4,096 bytes)",
               refused.status_code == 400 and mkdir.status_code == 400, (refused.status_code, mkdir.status_code))
    no_failures("deep trees")


# 4. Dashboard (dashboard) paths --------------------------------------------------------------------

@pytest.mark.django_db
def test_hostile_browser_paths_are_refused(fence, dashboard):
    generation = generation_of(fence)
    token = {}
    for name, raw in cases.BROWSER_PATHS:
        query = "?path=" + quote(raw, safe="", errors="surrogatepass")
        requests = {
            "download": lambda: dashboard.get(D + "files/download/" + query),
            "raw": lambda: dashboard.get(D + "files/raw/" + query),
            "preview": lambda: dashboard.get(D + "files/preview/" + query, HTTP_HX_REQUEST="true"),
            "delete": lambda: dashboard.post(D + "files/delete/", {"path": raw}),
            "move": lambda: dashboard.post(D + "files/move/", {"src": "data.bin", "dst": raw, "folder": ""}),
            "new folder": lambda: dashboard.post(D + "files/new-folder/", {"name": raw, "folder": ""}),
            "raw upload": lambda: dashboard.post(D + "files/upload/" + query, b"evil",
                                               content_type="application/octet-stream"),
            "multipart upload": lambda: dashboard.post(D + "files/upload/", {
                "folder": "", "relpath": [raw], "files": [_named(b"evil", "evil.txt")]}),
        }
        statuses = {action: send(request).status_code for action, request in requests.items()}
        bad = {a: s for a, s in statuses.items() if not 400 <= s < 500}
        token[name] = statuses
        TALLY.case("dashboard paths", name, not bad and generation_of(fence) == generation, bad or statuses)
    no_failures("dashboard paths")


def _named(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


# 5. Range requests ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_many_range_requests_never_blow_up(fence, api):
    admin = api("admin")
    data = bytes(range(256)) * 3 + bytes(232)  # 1,000 bytes
    seed(fence, {"range.bin": data})
    for name, header, allowed in cases.RANGE_CASES:
        response = send(lambda: admin.get(V + "files/range.bin", HTTP_RANGE=header))
        body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
        ok = response.status_code in allowed
        if response.status_code == 200:
            ok = ok and body == data
        elif response.status_code == 206:
            first, last = map(int, response["Content-Range"].split()[1].split("/")[0].split("-"))
            ok = ok and body == data[first:last + 1] and len(body) <= len(data)
        elif response.status_code == 416:
            ok = ok and response["Content-Range"] == "bytes */1000"
        TALLY.case("ranges", name, ok, (response.status_code, len(body)))
    no_failures("ranges")


# 6. Oversized and sparse files ---------------------------------------------------------------------

@pytest.mark.django_db
def test_oversized_files_are_refused_before_anything_is_committed(fence, api, tmp_path, cache_root):
    admin = api("admin")
    generation = generation_of(fence)
    announced = send(lambda: admin.generic("PUT", V + "files/huge.bin", b"x", content_type="application/octet-stream",
                                           CONTENT_LENGTH=str(LIMIT + 1)))
    TALLY.case("limits", "API upload announcing 50 MiB + 1", announced.status_code == 413, announced.status_code)

    sparse = tmp_path / "scratch" / "sparse.bin"
    sparse.parent.mkdir()
    with open(sparse, "wb") as fh:
        fh.truncate(LIMIT + 1)  # no disk blocks
    try:
        with open(sparse, "rb") as stream:
            files.file_put(fence, "huge.bin", stream)
    except LimitExceeded:
        refused = True
    else:
        refused = False
    TALLY.case("limits", "service upload streaming 50 MiB + 1 (sparse)", refused and generation_of(fence) == generation)

    remote, lease, cached, base, _ = checkout(fence, cache_root)
    try:
        with open(cached.tree / "huge.bin", "wb") as fh:
            fh.truncate(LIMIT + 1)
        try:
            sync.push(remote, lease, cached, base)
        except LimitExceeded:
            pushed_refused = True
        else:
            pushed_refused = False
        TALLY.case("limits", "job writing a sparse 50 MiB + 1 file", pushed_refused and generation_of(fence) == generation)
        os.unlink(cached.tree / "huge.bin")
        with open(cached.tree / "sparse.bin", "wb") as fh:  # 8 MiB, a hole then three bytes
            fh.truncate(8 * 1024 * 1024 - 3)
            fh.seek(0, os.SEEK_END)
            fh.write(b"end")
        sync.push(remote, lease, cached, base)
    finally:
        remote.release(lease)
    fence.refresh_from_db()
    entry = files.manifest_of(fence).entries.get("sparse.bin")
    tail = b"".join(files.open_file(fence, entry, entry.size - 3)) if entry else b""
    TALLY.case("limits", "sparse 8 MiB file round trip", entry is not None and entry.size == 8 * 1024 * 1024
               and tail == b"end", entry)
    no_failures("limits")


# 7. Special files in a mount ------------------------------------------------------------------------

@pytest.mark.django_db
def test_links_hard_links_and_special_files_in_a_mount(fence, api, dashboard, tmp_path, storage_root, cache_root):
    admin = api("admin")
    outside = tmp_path / "cache-sibling"
    links = {
        "abs-link": "/etc/passwd",
        "storage-link": str(storage_root / "sentinel.txt"),
        "up-link": "../../../../cache-sibling/sentinel.txt",
        "dangling": "../../nowhere/at/all",
        "dir-link": str(outside),
        "loop-a": "loop-b",
        "loop-b": "loop-a",
    }
    remote, lease, cached, base, _ = checkout(fence, cache_root)
    tree = cached.tree
    specials = {}
    try:
        for name, target in links.items():
            os.symlink(target, tree / name)
        (tree / "hard-a").write_bytes(b"hard")
        os.link(tree / "hard-a", tree / "hard-b")
        os.mkfifo(tree / "pipe")
        specials["pipe"] = "FIFO"
        here = os.getcwd()
        os.chdir(tree)  # a unix socket path is limited to 108 bytes: bind a relative name
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind("sock")
            specials["sock"] = "socket"
        finally:
            os.chdir(here)
        for name, kind in [("char-dev", stat.S_IFCHR), ("block-dev", stat.S_IFBLK)]:
            try:
                os.mknod(tree / name, kind | 0o600, os.makedev(1, 3) if kind == stat.S_IFCHR else os.makedev(7, 250))
                specials[name] = "device"
            except PermissionError:
                pass  # no CAP_MKNOD here: the FIFO and the socket still cover the rule
        os.close(os.open(os.path.join(os.fsencode(tree), b"bad-\xff-name"), os.O_CREAT | os.O_WRONLY, 0o644))
        specials[os.fsdecode(b"bad-\xff-name")] = "invalid UTF-8 name"
        stats = sync.push(remote, lease, cached, base)
        sock.close()
    finally:
        remote.release(lease)
    fence.refresh_from_db()
    manifest = files.manifest_of(fence)
    warnings = "\n".join(stats.warnings)
    for name, target in links.items():
        entry = manifest.entries.get(name)
        TALLY.case("special files", f"link {name} -> {target} kept as a link",
                   entry is not None and entry.type == LINK and entry.target == target, entry)
    hard = [manifest.entries.get(n) for n in ("hard-a", "hard-b")]
    TALLY.case("special files", "hard link becomes two regular files",
               all(e is not None and e.type == FILE and e.hash == sha(b"hard") for e in hard), hard)
    for name, kind in specials.items():
        shown = repr(os.fsencode(name)) if kind == "invalid UTF-8 name" else repr(name)
        TALLY.case("special files", f"{kind} {shown} skipped with a warning",
                   name not in manifest.entries and f"skipped {shown}" in warnings, warnings)

    # A fresh pull recreates links as links, never following them, and hard links as separate files.
    fresh = WorkerCache(cache_root / "fresh", 10**12).volume("acme", "training-data")
    lease = DirectRemote().acquire("acme", "training-data", "fresh pull", wait=0)
    try:
        sync.pull(DirectRemote(), lease, fresh)
    finally:
        DirectRemote().release(lease)
    pulled_links = {n: os.readlink(fresh.tree / n) for n in links if (fresh.tree / n).is_symlink()}
    TALLY.case("special files", "fresh pull recreates every link with its target text", pulled_links == links,
               pulled_links)
    a, b = os.lstat(fresh.tree / "hard-a"), os.lstat(fresh.tree / "hard-b")
    TALLY.case("special files", "fresh pull writes hard links as independent files",
               a.st_ino != b.st_ino and a.st_nlink == b.st_nlink == 1)

    # Our code never dereferences a link: API download, dashboard download/preview/raw refuse it.
    for name in ["abs-link", "up-link", "dir-link", "loop-a"]:
        statuses = [send(lambda: admin.get(V + "files/" + name)).status_code,
                    send(lambda: admin.get(V + "files/" + name + "/")).status_code,
                    send(lambda: dashboard.get(D + f"files/download/?path={name}")).status_code,
                    send(lambda: dashboard.get(D + f"files/preview/?path={name}")).status_code,
                    send(lambda: dashboard.get(D + f"files/raw/?path={name}")).status_code]
        TALLY.case("special files", f"{name} is never followed by download, listing or preview",
                   all(400 <= s < 500 for s in statuses), statuses)

    # A pull over a cache whose link now is a real folder must not write through the old link.
    files.file_delete(fence, "dir-link")
    files.file_put(fence, "dir-link/sentinel.txt", io.BytesIO(b"written through the link?"))
    files.file_delete(fence, "data.bin")
    fence.refresh_from_db()
    os.symlink(str(outside / "sentinel.txt"), cached.tree / "data.bin.tmp")
    os.replace(cached.tree / "data.bin.tmp", cached.tree / "hard-a")  # a job replaced a file with a link
    remote = DirectRemote()
    lease = remote.acquire("acme", "training-data", "second pull", wait=0)
    try:
        sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    TALLY.case("special files", "pull replaces a cached link with a real folder, never writing through it",
               (cached.tree / "dir-link").is_dir() and not (cached.tree / "dir-link").is_symlink()
               and (cached.tree / "dir-link" / "sentinel.txt").read_bytes() == b"written through the link?")
    TALLY.case("special files", "pull replaces a local link with the file, never writing through it",
               not (cached.tree / "hard-a").is_symlink() and (cached.tree / "hard-a").read_bytes() == b"hard")
    no_failures("special files")


# 8. Forged agent requests -------------------------------------------------------------------------

def _file(path, data=b"forged", **over):
    row = {"path": path, "type": "file", "size": len(data), "hash": sha(data), "mode": 0o644, "mtime_ns": 0,
           "target": "", "gen": 3}
    row.update(over)
    return row


def _dir(path):
    return {"path": path, "type": "dir", "size": 0, "hash": "", "mode": 0o755, "mtime_ns": 0, "target": "", "gen": 3}


def _link(path, target):
    return {"path": path, "type": "link", "size": 0, "hash": "", "mode": 0, "mtime_ns": 0, "target": target, "gen": 3}


FORGED_MANIFESTS = [
    ("traversal path", [_file("../escape")]),
    ("absolute path", [_file("/etc/cron.d/evil")]),
    ("dot-dot inside a path", [_dir("a"), _file("a/../../b")]),
    ("backslash path", [_file("..\\..\\evil")]),
    ("NUL in a path", [_file("evil\x00.txt")]),
    ("newline in a path", [_file("evil\n.txt")]),
    ("non-normalised path", [_dir("a"), _file("a//b")]),
    ("file beneath a link", [_link("l", "/tmp"), _file("l/evil")]),
    ("file beneath a file", [_file("f"), _file("f/evil")]),
    ("missing parent folder", [_file("nowhere/evil")]),
    ("unknown entry type", [_file("pipe", type="fifo")]),
    ("hash that is not hex", [_file("evil", hash="zz" * 32)]),
    ("hash never uploaded", [_file("evil", data=b"never uploaded")]),
    ("hash of the sibling volume's blob", [_file("evil", data=b"sibling secret")]),
    ("size that is text", [_file("evil", data=b"uploaded", size="big")]),
    ("negative size", [_file("evil", data=b"uploaded", size=-1)]),
    ("size that does not match the blob", [_file("evil", data=b"uploaded", size=999)]),
    ("mode that is text", [_file("evil", data=b"uploaded", mode="rwx")]),
    ("hash that is a number", [_file("evil", hash=12345)]),
    ("link with an empty target", [_link("l", "")]),
    ("link target that is a number", [_link("l", 7)]),
    ("entry with an unknown field", [_file("evil", data=b"uploaded", owner="root")]),
    ("entries that are a string", "entries"),
    ("entries that are numbers", [1, 2, 3]),
    ("file over the per-file limit", [_file("evil", data=b"uploaded", size=LIMIT + 1)]),
]


@pytest.mark.django_db
def test_forged_manifests_and_blobs_from_an_agent_are_refused_and_nothing_is_committed(fence, api, cast, storage_root):
    agent = api("admin")
    job_submit(fence.workspace, cast["owner"], "python", "# volume: training-data data\ndef main():\n    pass\n",
               enqueue=False)
    spec = agent.post("/api/w/acme/agent/claim/", {"worker": "w1"}, format="json").json()
    job = f"/api/w/acme/agent/jobs/{spec['id']}/"
    mount = job + "volumes/training-data/"
    key = {"HTTP_X_JOB_KEY": spec["job_key"]}
    lease = agent.post(mount + "lease/", {"holder": "agent w1", "wait": 0}, format="json", **key).json()
    token, parent = lease["token"], lease["generation"]
    commits = VolumeCommit.objects.count()
    prefix = storage_root / volume_prefix("acme", "training-data")

    def put_blob(digest, data):
        return send(lambda: agent.generic("PUT", mount + f"blobs/{digest}?token={token}", data,
                                          content_type="application/octet-stream", **key))

    stored = put_blob(sha(b"uploaded"), b"uploaded")
    assert stored.status_code == 201, stored.content
    mismatched = put_blob(sha(b"what the name says"), b"what the body is")
    TALLY.case("agent", "blob whose bytes do not hash to its name", mismatched.status_code == 400
               and not (prefix / "blobs" / sha(b"what the name says")).exists()
               and not (prefix / "blobs" / sha(b"what the body is")).exists(), mismatched.status_code)
    for name, digest in [("blob name with dot-dot", ".."), ("blob name in upper case", sha(b"x").upper()),
                         ("blob name with encoded slash", "..%2F..%2Fsentinel.txt")]:
        response = put_blob(digest, b"x")
        TALLY.case("agent", name, 400 <= response.status_code < 500, response.status_code)
    sibling_blob = send(lambda: agent.get(mount + f"blobs/{sha(b'sibling secret')}?token={token}", **key))
    TALLY.case("agent", "download of the sibling volume's blob by hash", sibling_blob.status_code == 404,
               sibling_blob.status_code)
    missing = send(lambda: agent.post(mount + "blobs/missing/", {"token": token, "hashes": ["../../x"]},
                                      format="json", **key))
    TALLY.case("agent", "missing-blobs query with a hostile hash", missing.status_code == 400, missing.status_code)
    nul = send(lambda: agent.post(job + "volumes/training%00data/lease/", {"holder": "x", "wait": 0},
                                  format="json", **key))
    TALLY.case("agent", "lease on a mount name with NUL", nul.status_code == 404, nul.status_code)
    other = send(lambda: agent.post(job + "volumes/training-data-x/commit/", {
        "token": token, "parent": 1, "manifest": {"format": 1, "entries": []}}, format="json", **key))
    TALLY.case("agent", "commit to a volume the job does not mount", other.status_code == 404, other.status_code)

    def commit(entries, token=token, parent=parent):
        doc = {"format": 1, "generation": parent + 1, "entries": entries}
        return send(lambda: agent.post(mount + "commit/", {"token": token, "parent": parent, "manifest": doc},
                                       format="json", **key))

    for name, entries in FORGED_MANIFESTS:
        response = commit(entries)
        TALLY.case("agent", f"manifest with {name}", 400 <= response.status_code < 500
                   and generation_of(fence) == parent, (response.status_code, response.content[:200]))
    for name, response in [("stale parent generation", commit([], parent=parent - 1)),
                           ("forged fencing token", commit([], token=token + 1000))]:
        TALLY.case("agent", name, response.status_code == 409, response.status_code)
    big = b"k" * 5000
    assert put_blob(sha(big), big).status_code == 201
    reused = [{"path": "big.bin", "type": "file", "size": len(big), "hash": sha(big), "mode": 0o644}]
    lying = send(lambda: agent.post(mount + "commit/", {"token": token, "parent": parent, "manifest": {
        "format": 1, "generation": parent + 1,
        "entries": reused + [{**reused[0], "path": f"copy-{i}.bin", "size": 1} for i in range(3)]}},
        format="json", **key))
    TALLY.case("agent", "a known blob reused under a false size", lying.status_code == 400
               and generation_of(fence) == parent, lying.status_code)
    TALLY.case("agent", "nothing was committed", VolumeCommit.objects.count() == commits
               and generation_of(fence) == parent)
    agent.post(mount + "lease/release/", {"token": token}, format="json", **key)
    no_failures("agent")


def test_history_cannot_slip_past_the_volume_cap_or_the_workspace_quota(fence, api, cast, storage_root):
    """20 overwrites of a 900 KiB file into a 1 MiB-capped volume; then a second volume against the quota."""
    workspace = fence.workspace
    workspace.max_volume_size = 1024 * 1024
    workspace.save(update_fields=["max_volume_size"])
    owner = api("owner")
    answers = [send(lambda i=i: owner.generic(
        "PUT", "/api/w/acme/volumes/training-data/files/big.bin", bytes([i]) * 900 * 1024,
        content_type="application/octet-stream")) for i in range(20)]
    accepted = sum(a.status_code < 300 for a in answers)
    refused = answers[-1]
    TALLY.case("history", "20 overwrites of 900 KiB into a 1 MiB cap: only the first accepted", accepted == 1
               and refused.status_code == 413 and "volume prune" in refused.json().get("detail", ""),
               (accepted, refused.status_code))
    stored = sum(p.stat().st_size for p in (storage_root / volume_prefix("acme", "training-data")).rglob("blobs/*"))
    TALLY.case("history", "refused overwrites upload nothing", stored < 1024 * 1024, stored)
    workspace.max_volume_size, workspace.storage_quota = None, 1536 * 1024
    workspace.save(update_fields=["max_volume_size", "storage_quota"])
    second = send(lambda: owner.generic("PUT", "/api/w/acme/volumes/training-data/files/other.bin",
                                        b"q" * 900 * 1024, content_type="application/octet-stream"))
    TALLY.case("history", "a volume past the workspace quota (history included)", second.status_code == 413
               and "quota" in second.json().get("detail", ""), second.status_code)
    no_failures("history")


# 9. Storage settings as a probe (issue 19) --------------------------------------------------------

@pytest.mark.django_db
def test_storage_settings_cannot_probe_the_server(fence, api, cast, settings, storage_root, tmp_path):
    from volumes.models import ObjectStorage

    base = tmp_path / "base"
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_BASE_DIR": base, "STORAGE_ALLOWED_HOSTS": []}
    admin = api("admin")
    page = Client()
    page.force_login(cast["admin"])
    count = ObjectStorage.objects.count()
    for name, template in cases.STORAGE_PROBE_CASES:
        url = template.format(storage_root=storage_root, tmp=tmp_path, base=base)
        created = send(lambda: admin.post("/api/w/acme/storages/", {"name": "probe", "url": url}, format="json"))
        tested = send(lambda: admin.post("/api/w/acme/storages/test/", {"url": url}, format="json"))
        form = {"name": "probe"}
        try:
            from volumes.storage.factory import parse_storage_url

            kind, config = parse_storage_url(url)
            form.update(kind=kind, **{f"cfg_{k}": v for k, v in config.items()})
        except ValueError:
            form.update(kind="filesystem", cfg_root=url)
        saved = send(lambda: page.post("/w/acme/settings/storage/new/", form, HTTP_HX_REQUEST="true"))
        TALLY.case("storage probes", name,
                   created.status_code == 400 and tested.status_code == 400 and saved.status_code == 422
                   and ObjectStorage.objects.count() == count and not base.exists(),
                   (created.status_code, tested.status_code, saved.status_code))
    no_failures("storage probes")


# 10. Web surfaces (issue 19): NUL and deep JSON, storage details in errors, credentials, CSP, ---------
#    anonymous bodies, deep breadcrumbs, chunked uploads, stale job keys, log and login caps.

DEEP_JSON = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
DEEPISH = {"a": json.loads("[" * 200 + "]" * 200)}  # parses, but nests past what we store


@pytest.mark.django_db
def test_nul_and_deeply_nested_json_never_answer_500(fence, api, dashboard, cast):
    admin = api("admin")
    deep = DEEP_JSON.encode()
    nul_cases = {
        "dashboard volume search": lambda: dashboard.get("/w/acme/assets/volumes/?q=a%00b"),
        "dashboard principal lookup": lambda: dashboard.get("/w/acme/principals/?who=ow%00ner"),
        "dashboard job list filter": lambda: dashboard.get("/w/acme/jobs/?status=%00"),
        "dashboard path with NUL": lambda: dashboard.get("/w/acme%00/assets/volumes/"),
        "dashboard share form user": lambda: dashboard.post(D + "shares/", {"who": "ow\x00ner", "level": "read"}),
        "dashboard job form script": lambda: dashboard.post("/w/acme/jobs/run/", {
            "language": "python", "content": "def main():\n    return '\x00'\n", "args": "{}"}),
        "dashboard job form args": lambda: dashboard.post("/w/acme/jobs/run/", {
            "language": "python", "content": "def main(a=1):\n    return a\n", "args": '{"a": "\\u0000"}'}),
        "login form username": lambda: Client().post("/login/", {"username": "ad\x00min", "password": "x"}),
        "dashboard members form (multipart)": lambda: dashboard.post("/w/acme/settings/members/",
                                                                     {"username": "ad\x00d", "role": "member"}),
        "dashboard new token name (multipart)": lambda: dashboard.post("/account/tokens/", {"name": "t\x00k"}),
        "API volume search": lambda: admin.get("/api/w/acme/volumes/?search=a%00b"),
        "API share principal": lambda: admin.post(V + "shares/", {"user": "ow\x00ner", "access": "read"},
                                                  format="json"),
        "API job args": lambda: admin.post("/api/w/acme/jobs/", {"language": "python", "content": "x=1",
                                                                 "args": {"a": "\x00"}}, format="json"),
        "API job script": lambda: admin.post("/api/w/acme/jobs/", {"language": "python", "content": "x='\x00'"},
                                             format="json"),
    }
    deep_cases = {
        "API job create": lambda: admin.generic("POST", "/api/w/acme/jobs/", deep, content_type="application/json"),
        "API volume create": lambda: admin.generic("POST", "/api/w/acme/volumes/", deep,
                                                   content_type="application/json"),
        "API share": lambda: admin.generic("POST", V + "shares/", deep, content_type="application/json"),
        "API move": lambda: admin.generic("POST", V + "move/", deep, content_type="application/json"),
        "API agent claim": lambda: admin.generic("POST", "/api/w/acme/agent/claim/", deep,
                                                 content_type="application/json"),
        "API job args nested 200 deep": lambda: admin.post("/api/w/acme/jobs/", {
            "language": "python", "content": "x=1", "args": DEEPISH}, format="json"),
        "dashboard job form args": lambda: dashboard.post("/w/acme/jobs/run/", {
            "language": "python", "content": "def main():\n    pass\n", "args": DEEP_JSON}),
    }
    for group, table in (("NUL", nul_cases), ("deep JSON", deep_cases)):
        for name, request in table.items():
            response = send(request)
            # A form page that shows the error (200) is a clear answer too; a job must not exist.
            TALLY.case(group, name, response.status_code < 500, (response.status_code, response.content[:200]))
    from volumes.models import Job

    # Only the API's JSON args may carry a NUL into a job: it is stored as U+FFFD (documented in the
    # schema), never as NUL; every other NUL or deep input created nothing.
    jobs = list(Job.objects.values_list("args", flat=True))
    TALLY.case("NUL", "no job was created from NUL or deep input, but for args stored without NUL",
               jobs == [{"a": "\ufffd"}], jobs)
    no_failures("NUL")
    no_failures("deep JSON")


@pytest.mark.django_db
def test_a_missing_blob_never_shows_a_member_the_storage_path_or_key(fence, api, dashboard, cast, storage_root):
    from volumes.permissions import set_share

    set_share(fence, cast["writer"], "write")
    blob = next(storage_root.rglob(sha(b"inside")))
    blob.unlink()
    secrets = [str(storage_root).encode(), b"volumes/acme", sha(b"inside").encode()]
    writer = api("writer")
    member_client = Client()
    member_client.force_login(cast["writer"])
    # Damaged storage is a server fault: a deliberate 500 with a clear message (not counted as a 5xx here).
    answers = {
        "API download": writer.get(V + "files/data.bin"),
        "dashboard download": member_client.get(D + "files/download/?path=data.bin"),
        "dashboard preview": member_client.get(D + "files/preview/?path=data.bin"),
    }
    for name, response in answers.items():
        body = response.content if not getattr(response, "streaming", False) else b"".join(response.streaming_content)
        TALLY.case("storage details", f"{name} of a file whose blob is gone",
                   response.status_code >= 400 and not any(s in body for s in secrets), (response.status_code, body[:300]))
    admin_view = api("admin").get(V + "files/data.bin")
    TALLY.case("storage details", "a workspace admin still sees which object is missing",
               sha(b"inside").encode() in admin_view.content, admin_view.content[:300])
    no_failures("storage details")


@pytest.mark.django_db
def test_credentials_in_an_endpoint_url_are_never_rendered_back(fence, cast):
    from volumes.models import ObjectStorage

    storage = ObjectStorage.objects.create(workspace=fence.workspace, name="minio", kind="s3", config={
        "bucket": "b", "endpoint_url": "http://alice:s3cr3t-pass@127.0.0.1:9000", "access_key": "AKIAEXAMPLE",
        "secret_key": "wJalrXUtnFEMI-secret"})
    client = Client()
    client.force_login(cast["admin"])
    pages = {"storage list": "/w/acme/settings/storage/", "storage form": f"/w/acme/settings/storage/{storage.pk}/"}
    for name, url in pages.items():
        response = send(lambda: client.get(url))
        TALLY.case("credentials", name, response.status_code == 200 and b"s3cr3t-pass" not in response.content
                   and b"wJalrXUtnFEMI-secret" not in response.content, response.status_code)
    no_failures("credentials")


@pytest.mark.django_db
def test_every_html_page_has_a_content_security_policy(fence, cast, dashboard):
    from volumes.services.jobs import job_submit

    job = job_submit(fence.workspace, cast["owner"], "python", "def main():\n    pass\n", enqueue=False)
    admin = Client()
    admin.force_login(cast["admin"])
    pages = {
        "home": (dashboard, "/"), "volumes": (dashboard, "/w/acme/assets/volumes/"), "volume": (dashboard, D),
        "history": (dashboard, D + "history/"), "jobs": (dashboard, "/w/acme/jobs/"),
        "job": (dashboard, f"/w/acme/jobs/{job.pk}/"), "run a script": (dashboard, "/w/acme/jobs/run/"),
        "storage settings": (admin, "/w/acme/settings/storage/"), "login": (Client(), "/login/"),
        "admin login": (Client(), "/admin/login/"), "API docs": (admin, "/api/docs/"),
        "not found": (dashboard, "/w/nope/"), "error page": (dashboard, D + "files/preview/?path=missing.txt"),
    }
    for name, (client, url) in pages.items():
        response = send(lambda: client.get(url))
        policy = response.get("Content-Security-Policy", "") if hasattr(response, "get") else ""
        script_src = next((p for p in policy.split(";") if p.strip().startswith("script-src")), "")
        strict = name == "API docs" or "unsafe" not in script_src  # Swagger UI needs eval (its own policy)
        TALLY.case("CSP", name, response.get("Content-Type", "").startswith("text/html") and "'self'" in script_src
                   and strict and "frame-ancestors 'none'" in policy,
                   (response.status_code, policy))
    no_failures("CSP")


@pytest.mark.django_db
def test_anonymous_request_bodies_are_capped_before_parsing(fence, tmp_path_factory):
    import tempfile

    big = b"x" * (5 * 1024 * 1024)
    boundary = "BoUnDaRy"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.bin\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    spool = tmp_path_factory.mktemp("spool")  # where Django would spool an upload
    tempfile.tempdir, before = str(spool), tempfile.tempdir
    try:
        anonymous = Client()
        answers = {
            "dashboard upload (multipart)": anonymous.generic(
                "POST", D + "files/upload/", multipart, content_type=f"multipart/form-data; boundary={boundary}"),
            "login form": anonymous.generic("POST", "/login/", big, content_type="application/x-www-form-urlencoded"),
            "API upload": anonymous.generic("PUT", V + "files/big.bin", big, content_type="application/octet-stream"),
            # A made-up Authorization header is no login on a dashboard route: its CSRF check would read the body.
            "dashboard upload with a made-up Authorization header": anonymous.generic(
                "POST", D + "files/upload/", multipart, content_type=f"multipart/form-data; boundary={boundary}",
                HTTP_AUTHORIZATION="Token made-up"),
        }
    finally:
        tempfile.tempdir = before
    for name, response in answers.items():
        TALLY.case("anonymous bodies", name, response.status_code == 413, response.status_code)
    TALLY.case("anonymous bodies", "nothing was spooled to disk", not list(spool.iterdir()), list(spool.iterdir()))
    ok = Client().post("/login/", {"username": "nobody", "password": "wrong"})
    TALLY.case("anonymous bodies", "a login form still gets through", ok.status_code == 200, ok.status_code)
    no_failures("anonymous bodies")


@pytest.mark.django_db
def test_the_deepest_folder_page_grows_with_the_path_not_its_depth_squared(fence, cast, dashboard):
    deep = "/".join(["d" * 15] * 250)  # 250 folders (the most a manifest takes), 3,999 bytes
    files.file_put(fence, deep + "/leaf.txt", io.BytesIO(b"leaf"), user=cast["owner"])
    page = send(lambda: dashboard.get(D + "?path=" + quote(deep)))
    fragment = send(lambda: dashboard.get(D + "?path=" + quote(deep), HTTP_HX_REQUEST="true",
                                          HTTP_HX_TARGET="file-browser"))
    for name, response in [("page", page), ("htmx fragment", fragment)]:
        TALLY.case("deep folders", f"{name} of the deepest folder", response.status_code == 200
                   and b"leaf.txt" in response.content and len(response.content) < 300_000,
                   (response.status_code, len(response.content)))
    no_failures("deep folders")


@pytest.mark.django_db
def test_chunked_uploads_stale_job_keys_and_log_floods(fence, api, cast, settings):
    from rest_framework.authtoken.models import Token

    from tests.api.test_chunked_uploads import _wsgi_put
    from volumes.models import Job, JobLogChunk
    from volumes.services.workspaces import agent_role_grant

    token = Token.objects.get_or_create(user=cast["owner"])[0].key
    code, _ = _wsgi_put(V + "files/data.bin", b"new", token, terminated=False)
    fence.refresh_from_db()
    kept = b"".join(files.open_file(fence, files.entry_at(fence, "data.bin")))
    TALLY.case("chunked uploads", "chunked body the server cannot read: 411, file kept",
               code == 411 and kept == b"inside", (code, kept[:20]))
    code, _ = _wsgi_put(V + "files/data.bin", b"streamed", token, terminated=True)
    TALLY.case("chunked uploads", "chunked body the server decoded: stored whole", code == 200, code)
    # A job key after the job finished, and a log flood through the agent endpoint.
    settings.VOLUMES = {**settings.VOLUMES, "JOB_LOG_MAX_BYTES": 32 * 1024}
    agent_role_grant(fence.workspace, cast["writer"])
    agent = api("writer")
    job_submit(fence.workspace, cast["owner"], "python", "def main():\n    pass\n", enqueue=False)
    spec = agent.post("/api/w/acme/agent/claim/", {"worker": "w"}, format="json").json()
    base, key = f"/api/w/acme/agent/jobs/{spec['id']}/", {"HTTP_X_JOB_KEY": spec["job_key"]}
    for _ in range(20):
        send(lambda: agent.post(base + "log/", {"text": "flood " * 5000}, format="json", **key))
    stored = sum(len(t.encode()) for t in JobLogChunk.objects.filter(job_id=spec["id"]).values_list("text", flat=True))
    TALLY.case("job keys", "an agent's log flood is kept within the cap", stored <= 32 * 1024, stored)
    send(lambda: agent.post(base + "finish/", {"status": "success"}, format="json", **key))
    log_before = Job.objects.get(pk=spec["id"]).log
    for name, request in {
        "log after finish": lambda: agent.post(base + "log/", {"text": "late\n"}, format="json", **key),
        "second finish": lambda: agent.post(base + "finish/", {"status": "failure"}, format="json", **key),
        "lease after finish": lambda: agent.post(base + "volumes/training-data/lease/", {"holder": "x"},
                                                 format="json", **key),
    }.items():
        response = send(request)
        TALLY.case("job keys", name, response.status_code == 409, response.status_code)
    job = Job.objects.get(pk=spec["id"])
    TALLY.case("job keys", "the finished job is unchanged", job.status == "success" and job.log == log_before)
    no_failures("chunked uploads")
    no_failures("job keys")


@pytest.mark.django_db
def test_password_guessing_is_throttled_per_account_and_per_address(fence, cast, settings):
    owner = cast["owner"]
    owner.set_password("a long and good pass phrase 9")
    owner.save()
    for url in ("/login/", "/admin/login/"):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            Client(REMOTE_ADDR="10.1.1.1").post(url, {"username": "owner", "password": "guess"})
        right = send(lambda: Client(REMOTE_ADDR="10.2.2.2").post(url, {"username": "owner",
                                                                       "password": "a long and good pass phrase 9"}))
        TALLY.case("logins", f"{url}: the right password after {settings.AXES_FAILURE_LIMIT} wrong ones",
                   right.status_code == 429, right.status_code)
        from axes.models import AccessAttempt

        AccessAttempt.objects.all().delete()
    no_failures("logins")


@pytest.mark.django_db
def test_stale_and_borrowed_rights_hand_out_no_job(fence, api, cast):
    """Removed members' jobs never run; agent rights are this workspace's role, never a global group or a
    role elsewhere; an agent gets no job whose volumes its own user may not use as the job does."""
    from django.contrib.auth.models import Group

    from tests.api.test_agent_endpoints import SCRIPT
    from volumes.models import Job, Membership
    from volumes.permissions import set_share
    from volumes.runner.run import job_run
    from volumes.services.workspaces import agent_role_grant, agent_role_revoke, membership_remove, workspace_ensure

    def claim(name):
        return send(lambda: api(name).post("/api/w/acme/agent/claim/", {"worker": name}, format="json"))

    def status(job):
        return Job.objects.get(pk=job.pk).status

    plain = "def main():\n    return 1\n"
    # A global group called "agents", and roles in another workspace, give nothing here.
    job = job_submit(fence.workspace, cast["owner"], "python", plain, enqueue=False)
    Group.objects.create(name="agents").user_set.add(cast["outsider"], cast["writer"])
    other = workspace_ensure("other", admins=["outsider"], members=["writer"])
    agent_role_grant(other, cast["outsider"])
    agent_role_grant(other, cast["writer"])
    for name, who, expected in [
        ("a non-member in the global agents group, admin and agent in another workspace", "outsider", 404),
        ("a member in the global agents group, agent in another workspace only", "writer", 403),
    ]:
        response = claim(who)
        TALLY.case("stale rights", name, response.status_code == expected and status(job) == "queued",
                   (response.status_code, status(job)))
    agent_role_grant(fence.workspace, cast["writer"])
    granted = claim("writer")
    TALLY.case("stale rights", "the agent role here hands out the job", granted.status_code == 200
               and granted.json()["id"] == job.pk, granted.status_code)
    agent_role_revoke(fence.workspace, cast["writer"])
    revoked = claim("writer")
    TALLY.case("stale rights", "a revoked agent role claims nothing", revoked.status_code == 403, revoked.status_code)

    # A removed member's queued job is cancelled: not handed out, not run in process.
    removed = job_submit(fence.workspace, cast["member"], "python", plain, enqueue=False)
    kept = job_submit(fence.workspace, cast["owner"], "python", plain, enqueue=False)
    membership_remove(fence.workspace, cast["member"])
    first, second = claim("admin"), claim("admin")
    TALLY.case("stale rights", "a removed member's queued job is cancelled and never handed out",
               status(removed) == "cancelled" and first.status_code == 200 and first.json()["id"] == kept.pk
               and second.status_code == 204, (status(removed), first.status_code, second.status_code))
    run = job_run(removed.pk)
    removed.refresh_from_db()
    TALLY.case("stale rights", "a removed member's cancelled job is not run in process",
               run is None and removed.status == "cancelled" and removed.started_at is None,
               (run, removed.status, removed.started_at))
    # The membership row gone without the service (no cancelling): the claim and the runner still check.
    in_process = job_submit(fence.workspace, cast["groupie"], "python", plain, enqueue=False)
    for_agent = job_submit(fence.workspace, cast["groupie"], "python", plain, enqueue=False)
    Membership.objects.filter(workspace=fence.workspace, user=cast["groupie"]).update(workspace=other)
    run = job_run(in_process.pk)
    TALLY.case("stale rights", "a job of a user no longer a member fails in process, unrun",
               run.status == "failure" and "not a member" in run.error, (run.status, run.error))
    refused = claim("admin")
    for_agent.refresh_from_db()
    TALLY.case("stale rights", "a job of a user no longer a member fails at the claim, not handed out",
               refused.status_code == 204 and for_agent.status == "failure" and "not a member" in for_agent.error,
               (refused.status_code, for_agent.status, for_agent.error))

    # A job whose volume the agent's user may not read (or may only read, for a job that writes) stays queued.
    set_share(fence, cast["reader"], "read")  # shared: the writer, without a share, may no longer see it
    agent_role_grant(fence.workspace, cast["writer"])
    agent_role_grant(fence.workspace, cast["reader"])
    job = job_submit(fence.workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    for name, who in [("an agent whose user may not read the job's volume gets nothing", "writer"),
                      ("an agent whose user may only read the volume a job writes gets nothing", "reader")]:
        response = claim(who)
        TALLY.case("stale rights", name, response.status_code == 204 and status(job) == "queued",
                   (response.status_code, status(job)))
    set_share(fence, cast["writer"], "write")
    granted = claim("writer")
    TALLY.case("stale rights", "once its user may write the volume, the agent gets the job",
               granted.status_code == 200 and granted.json()["id"] == job.pk, granted.status_code)
    no_failures("stale rights")
