"""Files through the API: folders, downloads with ranges, uploads, delete, move, history and restore."""
import pytest

from volumes.engine import leases
from volumes.models import Volume, VolumeCommit
from volumes.services import files

from .helpers import body, put_file, seed

pytestmark = pytest.mark.django_db

V = "/api/w/acme/volumes/training-data/"
DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def filled(volume, cast):
    seed(volume, {"data.bin": DATA, "docs/readme.md": b"# hi\n", "docs/page.html": b"<script>alert(1)</script>"},
         user=cast["owner"])
    volume.refresh_from_db()
    return volume


def test_it_lists_the_root_and_a_folder_with_a_trailing_slash(owner_api, filled):
    root = owner_api.get(V + "files/").json()
    assert [(e["name"], e["type"]) for e in root["entries"]] == [("docs", "dir"), ("data.bin", "file")]
    assert root["generation"] == 3
    docs = owner_api.get(V + "files/docs/").json()
    assert [e["path"] for e in docs["entries"]] == ["docs/page.html", "docs/readme.md"]
    readme = docs["entries"][1]
    assert readme["size"] == 5 and len(readme["hash"]) == 64 and readme["modified_at"]
    assert owner_api.get(V + "files/nope/").status_code == 404
    assert owner_api.get(V + "files/docs").status_code == 400  # a folder is not downloadable


def test_a_download_is_streamed_typed_and_never_rendered(owner_api, filled):
    response = owner_api.get(V + "files/docs/page.html")
    assert response.status_code == 200 and response.streaming
    assert body(response) == b"<script>alert(1)</script>"
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["Content-Length"] == "25" and response["Accept-Ranges"] == "bytes"
    assert owner_api.get(V + "files/data.bin")["Content-Type"] == "application/octet-stream"
    head = owner_api.head(V + "files/docs/page.html")
    assert head.status_code == 200 and head["Content-Length"] == "25" and body(head) == b""
    assert owner_api.get(V + "files/missing.txt").status_code == 404


N = len(DATA)


@pytest.mark.parametrize("header,status,span", [
    ("bytes=0-99", 206, (0, 100)),
    ("bytes=100-", 206, (100, N)),
    ("bytes=-10", 206, (N - 10, N)),
    ("bytes=10000-99999", 206, (10000, N)),
    ("bytes=5-5", 206, (5, 6)),
    ("bytes=0-1,5-6", 200, (0, N)),  # several ranges: the whole file
    ("items=0-5", 200, (0, N)),  # unknown unit: ignored
    ("bytes=9-3", 200, (0, N)),  # malformed: ignored
    ("bytes=20000-", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(11)), 416, None),  # more than 10 ranges
])
def test_range_requests(owner_api, filled, header, status, span):
    response = owner_api.get(V + "files/data.bin", HTTP_RANGE=header)
    assert response.status_code == status
    if span is not None:
        start, end = span
        assert body(response) == DATA[start:end] and response["Content-Length"] == str(end - start)
    if status == 206:
        assert response["Content-Range"] == f"bytes {start}-{end - 1}/{N}"
    if status == 416:
        assert response["Content-Range"] == f"bytes */{N}" and response.json()["error"] == "range_not_satisfiable"


def test_if_range_with_an_old_etag_sends_the_whole_file(owner_api, filled):
    etag = owner_api.get(V + "files/data.bin")["ETag"]
    assert owner_api.get(V + "files/data.bin", HTTP_RANGE="bytes=0-0", HTTP_IF_RANGE=etag).status_code == 206
    assert owner_api.get(V + "files/data.bin", HTTP_RANGE="bytes=0-0", HTTP_IF_RANGE='"old"').status_code == 200


def test_an_upload_creates_then_replaces_a_file_each_as_a_generation(owner_api, volume):
    created = put_file(owner_api, "acme", "training-data", "deep/er/new.txt", b"one")
    assert created.status_code == 201, created.json()
    assert created.json()["path"] == "deep/er/new.txt" and created.json()["generation"] == 1
    replaced = put_file(owner_api, "acme", "training-data", "deep/er/new.txt", b"two!")
    assert replaced.status_code == 200 and replaced.json()["size"] == 4
    assert body(owner_api.get(V + "files/deep/er/new.txt")) == b"two!"
    volume.refresh_from_db()
    assert volume.generation == 2 and VolumeCommit.objects.get(volume=volume, generation=2).user.username == "owner"


def test_an_upload_reads_the_body_as_a_stream(owner_api, volume, monkeypatch):
    """The view hands the request stream to the service: the body is never loaded as request.body."""
    seen = {}
    real = files.file_put

    def spy(volume, path, stream, user=None):
        seen["type"] = type(stream).__name__
        return real(volume, path, stream, user=user)

    monkeypatch.setattr(files, "file_put", spy)
    big = b"x" * (3 * 1024 * 1024)  # over DATA_UPLOAD_MAX_MEMORY_SIZE: request.body would refuse it
    assert put_file(owner_api, "acme", "training-data", "big.bin", big).status_code == 201
    assert seen["type"] in ("WSGIRequest", "LimitedStream")


def test_an_upload_over_the_file_limit_is_refused_with_413(owner_api, volume, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1000}
    response = put_file(owner_api, "acme", "training-data", "big.bin", b"x" * 1001)
    assert response.status_code == 413 and response.json()["error"] == "limit_exceeded"
    assert "1,000 bytes" in response.json()["detail"]
    assert put_file(owner_api, "acme", "training-data", "ok.bin", b"x" * 1000).status_code == 201
    volume.refresh_from_db()
    assert volume.generation == 1


def test_an_empty_upload_makes_an_empty_file(owner_api, volume):
    response = put_file(owner_api, "acme", "training-data", "empty.txt", b"")
    assert response.status_code == 201 and response.json()["size"] == 0
    assert body(owner_api.get(V + "files/empty.txt")) == b""
    assert owner_api.get(V + "files/empty.txt", HTTP_RANGE="bytes=0-").status_code == 416


def test_file_changes_are_refused_with_409_while_a_job_holds_the_lease(owner_api, filled):
    lease = leases.try_acquire(filled.pk, "agent-1 job 9")
    try:
        for response in [
            put_file(owner_api, "acme", "training-data", "x.txt", b"x"),
            owner_api.delete(V + "files/data.bin"),
            owner_api.post(V + "folders/", {"path": "new"}, format="json"),
            owner_api.post(V + "move/", {"src": "data.bin", "dst": "moved.bin"}, format="json"),
            owner_api.post(V + "history/1/restore/"),
        ]:
            assert response.status_code == 409 and "agent-1 job 9" in response.json()["holder"]
    finally:
        leases.release(lease)
    assert body(owner_api.get(V + "files/data.bin")) == DATA  # reads are fine while leased


def test_delete_make_folder_and_move(owner_api, filled):
    assert owner_api.post(V + "folders/", {"path": "a/b/c"}, format="json").status_code == 201
    assert owner_api.post(V + "folders/", {"path": "a/b/c"}, format="json").status_code == 409
    moved = owner_api.post(V + "move/", {"src": "docs", "dst": "a/docs"}, format="json")
    assert moved.status_code == 200
    assert body(owner_api.get(V + "files/a/docs/readme.md")) == b"# hi\n"
    assert owner_api.get(V + "files/docs/readme.md").status_code == 404
    assert owner_api.delete(V + "files/a/").status_code == 200  # a folder with all inside it
    assert [e["name"] for e in owner_api.get(V + "files/").json()["entries"]] == ["data.bin"]
    assert owner_api.delete(V + "files/a/").status_code == 404
    into_itself = owner_api.post(V + "move/", {"src": "data.bin", "dst": "data.bin/x"}, format="json")
    assert into_itself.status_code == 400


def test_history_lists_who_changed_what_and_restore_brings_an_old_generation_back(owner_api, volume, cast):
    seed(volume, {"a.txt": b"v1"}, user=cast["owner"])
    seed(volume, {"a.txt": b"v2", "b.txt": b"bbb"}, user=cast["writer"])
    history = owner_api.get(V + "history/").json()
    assert history["count"] == 3
    newest = history["results"][0]
    assert (newest["generation"], newest["user"], newest["files_added"]) == (3, "writer", 1)
    assert history["results"][1]["files_changed"] == 1
    restored = owner_api.post(V + "history/1/restore/")
    assert restored.status_code == 200 and restored.json()["generation"] == 4
    assert body(owner_api.get(V + "files/a.txt")) == b"v1"
    assert owner_api.get(V + "files/b.txt").status_code == 404
    assert owner_api.get(V + "history/").json()["results"][0]["message"] == "restore generation 1"
    assert owner_api.post(V + "history/99/restore/").status_code == 404
    assert Volume.objects.get(pk=volume.pk).generation == 4


def test_symlinks_are_listed_with_their_target_and_never_followed(owner_api, volume, cache_root):
    from tests.engine.helpers import commit

    def mutate(tree):
        (tree / "real.txt").write_text("real")
        (tree / "link").symlink_to("/etc/passwd")

    commit(volume, cache_root, mutate)
    entries = {e["name"]: e for e in owner_api.get(V + "files/").json()["entries"]}
    assert entries["link"]["type"] == "link" and entries["link"]["target"] == "/etc/passwd"
    response = owner_api.get(V + "files/link")
    assert response.status_code == 400 and "symlink" in response.json()["detail"]
    assert b"root:" not in response.content


def test_prune_drops_old_generations_from_history_for_those_who_may_delete(owner_api, client_for, volume, cast):
    from volumes.permissions import set_share

    seed(volume, {"a.txt": b"v1", "b.txt": b"v2", "c.txt": b"v3"}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")
    assert client_for("reader").post(V + "history/prune/", {"keep": 1}, format="json").status_code == 403
    assert owner_api.post(V + "history/prune/", {"keep": 0}, format="json").status_code == 400
    pruned = owner_api.post(V + "history/prune/", {"keep": 2}, format="json")
    assert pruned.status_code == 200 and pruned.json() == {"pruned": 1}
    assert [r["generation"] for r in owner_api.get(V + "history/").json()["results"]] == [3, 2]
    assert owner_api.post(V + "history/prune/", format="json").json() == {"pruned": 1}  # keep 1 by default
    assert VolumeCommit.objects.filter(volume=volume).count() == 1


def _tar(members) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tar_upload_commits_its_files_as_one_generation(owner_api, volume):
    import tarfile

    body = _tar([("a.txt", b"alpha", tarfile.REGTYPE), ("sub/b.txt", b"beta", tarfile.REGTYPE)])
    response = owner_api.generic("POST", f"/api/w/acme/volumes/{volume.name}/upload/?folder=in", body,
                                 content_type="application/x-tar")
    assert response.status_code == 201, response.json()
    assert response.json() == {"generation": 1, "files": 2}
    volume.refresh_from_db()
    from volumes.services import files

    assert volume.generation == 1 and files.entry_at(volume, "in/sub/b.txt").size == 4


@pytest.mark.parametrize("name,kind", [("../escape.txt", b"0"), ("/etc/x", b"0"), ("link", b"2")])
def test_a_tar_upload_refuses_escapes_and_links(owner_api, volume, name, kind):
    import tarfile

    body = _tar([("ok.txt", b"fine", tarfile.REGTYPE), (name, b"bad", kind)])
    response = owner_api.generic("POST", f"/api/w/acme/volumes/{volume.name}/upload/", body,
                                 content_type="application/x-tar")
    assert response.status_code == 400, response.json()
    volume.refresh_from_db()
    assert volume.generation == 0


def test_a_reader_cannot_tar_upload(client_for, volume, cast):
    from volumes.permissions import set_share

    set_share(volume, cast["reader"], "read")
    response = client_for("reader").generic("POST", f"/api/w/acme/volumes/{volume.name}/upload/", _tar([]),
                                            content_type="application/x-tar")
    assert response.status_code == 403
