"""Folders in and out: a folder's tree uploads as one generation (a tar stream from the browser);
a folder or the whole volume downloads as a zip, streamed file by file."""
import io
import os
import tarfile
import zipfile

import pytest

from volumes.models import Volume
from volumes.services import archive, files

from ..engine.helpers import commit
from .conftest import url

pytestmark = pytest.mark.django_db


def tar_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_folder_upload_keeps_its_tree_in_one_generation(as_user, workspace, volume):
    long_name = "deep/" + "n" * 150 + ".txt"
    members = {f"photos/{i:03}.jpg": b"j" * i for i in range(120)}
    members.update({"photos/raw/a.cr2": b"raw", long_name: b"long"})
    response = as_user("owner").post(url(workspace, volume, "files/upload/?folder=inbox"), data=tar_of(members),
                                     content_type="application/x-tar")
    assert response.status_code == 200, response.content
    assert response.json()["generation"] == 1 and "122 files" in response.json()["message"]
    volume.refresh_from_db()
    paths = {e.path for e in files.manifest_of(volume).entries.values() if e.type == "file"}
    assert paths == {f"inbox/{p}" for p in members}
    assert volume.generation == 1
    bad = as_user("owner").post(url(workspace, volume, "files/upload/"), data=tar_of({"../x": b"x"}),
                                content_type="application/x-tar")
    assert bad.status_code == 400
    assert as_user("outsider").post(url(workspace, volume, "files/upload/"), data=tar_of({"a": b"a"}),
                                    content_type="application/x-tar").status_code == 404


@pytest.fixture
def tree(volume, tmp_path):
    def mutate(root):
        (root / "reports" / "2024").mkdir(parents=True)
        (root / "reports" / "2024" / "q1.csv").write_bytes(b"a,b\n1,2\n")
        (root / "reports" / "summary.md").write_bytes(b"# sum\n")
        (root / "reports" / "empty").mkdir()
        os.symlink("../etc/passwd", root / "reports" / "link")
        (root / "top.bin").write_bytes(os.urandom(3000))

    commit(volume, tmp_path / "cache", mutate)
    volume.refresh_from_db()
    return volume


def unzip(response) -> zipfile.ZipFile:
    assert response.streaming and response["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_a_folder_downloads_as_a_zip_with_its_tree_and_links(as_user, workspace, tree):
    response = as_user("reader").get(url(workspace, tree, "files/zip/?path=reports"))
    assert 'filename="training-data-reports.zip"' in response["Content-Disposition"]
    archive_ = unzip(response)
    assert archive_.testzip() is None
    names = sorted(archive_.namelist())
    assert names == ["2024/", "2024/q1.csv", "empty/", "link", "summary.md"]
    assert archive_.read("2024/q1.csv") == b"a,b\n1,2\n"
    link = archive_.getinfo("link")
    assert (link.external_attr >> 16) & 0o170000 == 0o120000 and archive_.read("link") == b"../etc/passwd"


def test_the_whole_volume_downloads_as_a_zip(as_user, workspace, tree):
    whole = unzip(as_user("member").get(url(workspace, tree, "files/zip/")))
    assert "top.bin" in whole.namelist() and "reports/2024/q1.csv" in whole.namelist()
    assert len(whole.read("top.bin")) == 3000
    assert as_user("member").get(url(workspace, tree, "files/zip/?path=nope")).status_code == 404
    assert as_user("outsider").get(url(workspace, tree, "files/zip/")).status_code == 404


def test_the_zip_is_sent_while_files_are_still_being_read(workspace, volume, monkeypatch):
    """Streamed: bytes leave before later files are even opened, in pieces near the chunk size."""
    big = {f"f{i}.bin": os.urandom(600_000) for i in range(4)}
    for name, data in big.items():
        files.file_put(volume, name, io.BytesIO(data))
    volume = Volume.objects.get(pk=volume.pk)
    opened = []
    real_open = files.open_file
    monkeypatch.setattr(files, "open_file", lambda v, e, *a: (opened.append(e.path), real_open(v, e, *a))[1])
    _, entries = archive.zip_entries(volume)
    stream = archive.zip_stream(volume, entries, chunk=256 * 1024)
    first = next(stream)
    assert len(opened) == 1 and 0 < len(first) < 700_000
    rest = list(stream)
    assert len(opened) == 4 and max(map(len, rest)) < 1_000_000
    restored = zipfile.ZipFile(io.BytesIO(first + b"".join(rest)))
    assert {n: restored.read(n) for n in restored.namelist()} == big


def test_a_zip_download_keeps_its_generation_while_the_volume_changes_and_gc_runs(workspace, volume, settings):
    """A slow download holds a reader's pin: the files are deleted, history pruned and GC run while it
    streams, and it still delivers every file of the generation it started with; then the pin goes."""
    from volumes.models import VolumePin
    from volumes.services import bulk, gc
    from volumes.services.volumes import volume_prune_history

    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0, "GC_GRACE": 0}
    big = {f"f{i}.bin": os.urandom(600_000) for i in range(4)}
    files.file_put_many(volume, [(name, io.BytesIO(data)) for name, data in big.items()])
    volume = Volume.objects.get(pk=volume.pk)
    generation, stream = archive.pinned_zip(volume)
    assert generation == volume.generation
    first = next(stream)
    bulk.entries_delete(volume, list(big))
    volume_prune_history(Volume.objects.get(pk=volume.pk), keep=1)
    gc.gc_volume(Volume.objects.get(pk=volume.pk))
    restored = zipfile.ZipFile(io.BytesIO(first + b"".join(stream)))
    assert {n: restored.read(n) for n in restored.namelist()} == big
    assert not VolumePin.objects.filter(volume=volume).exists()
    removed = gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert removed["blobs"] == 4  # unpinned, the deleted files' blobs go at the next run
