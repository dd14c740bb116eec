"""A push to a local store copies each file at a new path into the store as the scan hashes it (a batch's
`stage`), then names the copy after its hash (`adopt`): the file is read once instead of twice.
Whatever is staged, the store must hold exactly what a plain upload holds: every blob its own bytes, one blob a
content, no copy left behind, whether the content was stored already, the push was refused, or a process died.
"""
import hashlib
import os

import pytest

from volumes.engine import forked, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.exceptions import LimitExceeded
from volumes.models import Volume
from volumes.storage.filebatch import FileBatch

from .helpers import checkout, commit, tree_listing
from .test_forked_shares import _store_files, _write, forks  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)


class _Counted(DirectRemote):
    """Counts the blobs uploaded after the scan and the blobs named from what the scan staged."""

    def __init__(self):
        super().__init__()
        self.uploaded, self.adopted = [], []

    def upload_blob(self, lease, digest, local_path, hashed_as=None):
        self.uploaded.append(digest)
        super().upload_blob(lease, digest, local_path, hashed_as)

    def adopt_blob(self, lease, digest):
        adopted = super().adopt_blob(lease, digest)
        if adopted:
            self.adopted.append(digest)
        return adopted


def _push(volume, cache_root, mutate, remote=None, **kwargs):
    """Check out, mutate the tree, push with `remote` (a _Counted by default); (stats, remote, writer tree)."""
    remote = remote or _Counted()
    _, lease, cached, base, _ = checkout(volume, cache_root)
    try:
        mutate(cached.tree)
        return sync.push(remote, lease, cached, base, **kwargs), remote, cached.tree
    finally:
        remote.release(lease)


def _assert_store_exact(storage_root, tree):
    """Every blob is its own bytes, every file of `tree` has its blob, and no temp file is left."""
    blobs, temps = _store_files(storage_root)
    assert not temps, temps
    for name in blobs:
        assert hashlib.sha256(next(storage_root.rglob(f"blobs/{name}")).read_bytes()).hexdigest() == name
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in tree.rglob("*") if p.is_file()} <= blobs
    return blobs


def test_a_push_copies_each_new_file_into_a_local_store_as_it_hashes_it(volume, tmp_path, storage_root):
    stats, remote, tree = _push(volume, tmp_path / "writer", _write)
    assert stats.files_pushed == 42 and stats.committed_generation == 1
    assert remote.uploaded == [] and len(remote.adopted) == 42, "the files were read again to upload them"
    assert len(_assert_store_exact(storage_root, tree)) == 42
    _, lease, reader, _, _ = checkout(volume, tmp_path / "reader")
    DirectRemote().release(lease)
    assert tree_listing(reader.tree) == tree_listing(tree)


def test_a_content_stored_already_or_twice_in_one_push_leaves_one_blob_and_no_copy(volume, tmp_path, storage_root):
    commit(volume, tmp_path / "writer", lambda tree: (tree / "kept.txt").write_text("stored before"))

    def copies(tree):
        (tree / "copy-of-kept.txt").write_text("stored before")  # a new path, a content the store holds
        for i in range(3):
            (tree / f"twin-{i}.txt").write_text("one content, three new paths")

    stats, remote, tree = _push(volume, tmp_path / "writer", copies)
    assert stats.files_pushed == 1 and remote.adopted == [hashlib.sha256(b"one content, three new paths").hexdigest()]
    assert remote.uploaded == []
    assert len(_assert_store_exact(storage_root, tree)) == 2


def test_a_file_rewritten_at_its_path_is_not_staged_but_uploaded(volume, tmp_path, storage_root):
    """A file the base has is likely rewritten with bytes already stored (a touch, a copy back): staging it
    would copy those bytes into the store only to remove them."""
    commit(volume, tmp_path / "writer", lambda tree: (tree / "data.txt").write_text("first"))
    stats, remote, tree = _push(volume, tmp_path / "writer", lambda tree: (tree / "data.txt").write_text("second"))
    assert stats.files_pushed == 1 and remote.adopted == [] and len(remote.uploaded) == 1
    assert len(_assert_store_exact(storage_root, tree)) == 2


def test_a_file_changed_before_it_is_staged_is_never_stored_under_the_hash_of_other_bytes(
        volume, tmp_path, storage_root, monkeypatch):
    """A process that outlived its job appends to a file between the walk's stat and the copy: the copy is not
    the file the walk saw, so it is not kept; the upload after the scan stores what the file holds then."""
    real = FileBatch.stage

    def appended_first(self, source, hashed_as):
        if source.endswith("d2/f5.txt"):
            with open(source, "ab") as fh:
                fh.write(b" and more")
        return real(self, source, hashed_as)

    monkeypatch.setattr(FileBatch, "stage", appended_first)
    stats, remote, tree = _push(volume, tmp_path / "writer", _write)
    assert stats.committed_generation == 1 and len(remote.adopted) == 41 and len(remote.uploaded) == 1
    assert (tree / "d2" / "f5.txt").read_bytes() == b"file 2/5 and more"
    _assert_store_exact(storage_root, tree)
    _, lease, reader, _, _ = checkout(volume, tmp_path / "reader")
    DirectRemote().release(lease)
    assert (reader.tree / "d2" / "f5.txt").read_bytes() == b"file 2/5 and more"


def test_a_push_refused_after_its_scan_leaves_nothing_in_the_store(volume, tmp_path, storage_root):
    with pytest.raises(LimitExceeded):
        _push(volume, tmp_path / "writer", _write, max_volume_size=100)
    assert _store_files(storage_root) == (set(), [])
    assert Volume.objects.get(pk=volume.pk).generation == 0


def test_a_failure_in_the_middle_of_staging_leaves_no_copy(volume, tmp_path, storage_root, monkeypatch):
    real, calls = FileBatch.stage, []

    def fails_at_the_tenth(self, source, hashed_as):
        calls.append(source)
        if len(calls) == 10:
            raise OSError(5, "Input/output error", source)
        return real(self, source, hashed_as)

    monkeypatch.setattr(FileBatch, "stage", fails_at_the_tenth)
    with pytest.raises(OSError):
        _push(volume, tmp_path / "writer", _write)
    assert _store_files(storage_root) == (set(), [])


def test_a_staging_process_that_dies_leaves_its_share_to_the_parent(volume, tmp_path, storage_root, monkeypatch, forks):
    real = forked.run_in_child
    monkeypatch.setattr(forked, "run_in_child", lambda work: real(lambda: (work(), os._exit(3))))
    stats, remote, tree = _push(volume, tmp_path / "writer", _write)
    assert forks and stats.files_pushed == 42 and len(remote.adopted) == 42
    blobs, temps = _store_files(storage_root)
    assert len(blobs) == 42 and all(t.name.startswith(".") for t in temps)
    # The dead child's copies are temp files, never blobs: the garbage collector removes them.
    from volumes.storage.factory import store_for_volume

    store, prefix = store_for_volume(Volume.objects.get(pk=volume.pk))
    assert store.abort_incomplete_uploads(prefix) == len(temps)
    assert len(_assert_store_exact(storage_root, tree)) == 42
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    _, lease, reader, _, _ = checkout(volume, tmp_path / "reader")
    DirectRemote().release(lease)
    assert tree_listing(reader.tree) == tree_listing(writer)
