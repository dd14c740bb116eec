"""A pull from a store over the network downloads each content once: files of one content (empty files, copies of
one file) after the first are copied from it once it has landed, and come out exactly as stored."""
import hashlib
import os

import pytest

from tests.servers import use_storage
from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote

from .helpers import checkout, commit, tree_listing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def s3_volume(workspace, cast, request, tmp_path):
    from volumes.services.volumes import volume_create

    use_storage(workspace, "s3", request, tmp_path)
    return volume_create(workspace, "duplicates", owner=cast["owner"])


def _write(tree):
    (tree / "pkg").mkdir()
    for i in range(30):
        (tree / "pkg" / f"m{i:02d}").mkdir()
        (tree / "pkg" / f"m{i:02d}" / "__init__.py").write_bytes(b"")
    for i in range(5):
        (tree / f"copy{i}.bin").write_bytes(b"the same bytes\n" * 100)
        os.chmod(tree / f"copy{i}.bin", 0o600 if i % 2 else 0o755)
        os.utime(tree / f"copy{i}.bin", ns=(10**18 + i, 10**18 + i))
    (tree / "other.bin").write_bytes(b"other")


def test_files_of_one_content_are_downloaded_once_and_copied_exactly(s3_volume, tmp_path, monkeypatch):
    commit(s3_volume, tmp_path / "writer", _write)
    downloads = []
    real = DirectRemote.download_blob_hashed

    def counted(self, lease, digest, local_path):
        downloads.append(digest)
        return real(self, lease, digest, local_path)

    monkeypatch.setattr(DirectRemote, "download_blob_hashed", counted)
    remote, lease, cached, base, stats = checkout(s3_volume, tmp_path / "reader")
    remote.release(lease)
    contents = [b"", b"the same bytes\n" * 100, b"other"]
    assert sorted(downloads) == sorted(hashlib.sha256(c).hexdigest() for c in contents)
    assert stats.files_pulled == 3 and stats.files_copied == 33
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(s3_volume.workspace_id, s3_volume.name).tree
    assert tree_listing(cached.tree) == tree_listing(writer)
    for i in range(5):
        assert os.stat(cached.tree / f"copy{i}.bin").st_mtime_ns == 10**18 + i
    _, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0  # every copy has its record
