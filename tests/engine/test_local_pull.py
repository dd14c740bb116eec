"""A pull from a store on this machine (filesystem) copies each new file itself, straight to its place in the
tree (sync._copy_new), and hands anything it cannot vouch for to the store's own download, which says what is
wrong. Whatever the path, the tree is exactly the generation and nothing half-written stays in it."""
import os

import pytest

from volumes.engine import forked, sync
from volumes.engine.cache import WorkerCache
from volumes.exceptions import BlobMissing, IntegrityError

from .helpers import checkout, commit, pull_refused, tree_listing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    monkeypatch.setattr(forked, "cores", lambda: 1)


def _write(tree):
    (tree / "d").mkdir()
    for i in range(5):
        (tree / "d" / f"f{i}.txt").write_text(f"file {i}" * i)  # f0 is empty
        os.utime(tree / "d" / f"f{i}.txt", ns=(10**18, 10**18 + i))
    (tree / "big.bin").write_bytes(os.urandom(3 * sync.CHUNK + 5))  # several reads
    os.chmod(tree / "d" / "f1.txt", 0o400)
    os.chmod(tree / "d" / "f2.txt", 0o000)
    os.chmod(tree / "d" / "f3.txt", 0o4755)  # a push strips setuid


def _blob(storage_root, entry):
    return next(storage_root.rglob(f"blobs/{entry.hash}"))


def test_a_cold_pull_copies_every_file_exactly_with_its_mode_time_and_hash_cache_record(volume, tmp_path):
    commit(volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    remote, lease, cached, base, stats = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    assert stats.files_pulled == 6
    assert tree_listing(cached.tree) == tree_listing(writer)
    assert {p: os.lstat(cached.tree / p).st_mtime_ns for p in base.entries if p.endswith(".txt")} == {
        e.path: e.mtime_ns for e in base.files if e.path.endswith(".txt")}
    assert os.stat(cached.tree / "d" / "f3.txt").st_mode & 0o7777 == 0o755
    # Every record is the file's own final stat: the next scan hashes nothing.
    again, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0 and all(again.entries[p] is base.entries[p] for p in base.entries)
    assert not os.listdir(cached.staging)


@pytest.mark.parametrize("damage", ["other bytes", "cut short", "empty"])
def test_a_blob_that_is_not_its_entry_fails_the_pull_naming_the_file_and_leaves_nothing_at_its_path(
        volume, tmp_path, storage_root, damage):
    commit(volume, tmp_path / "writer", _write)
    remote, lease, _, base, _ = checkout(volume, tmp_path / "writer")
    remote.release(lease)
    entry = base.entries["big.bin"]
    blob = _blob(storage_root, entry)
    data = blob.read_bytes()
    os.chmod(blob, 0o644)
    blob.write_bytes({"other bytes": os.urandom(len(data)), "cut short": data[:-1], "empty": b""}[damage])
    failed, cached = pull_refused(volume, tmp_path / "reader", IntegrityError, holder="reader")
    assert "'big.bin'" in str(failed) and "does not match its hash" in str(failed)
    assert not os.path.lexists(cached.tree / "big.bin")
    assert not os.listdir(cached.staging)


def test_a_missing_blob_fails_the_pull_saying_so_and_the_next_pull_after_the_repair_completes(
        volume, tmp_path, storage_root):
    commit(volume, tmp_path / "writer", _write)
    remote, lease, _, base, _ = checkout(volume, tmp_path / "writer")
    remote.release(lease)
    entry = base.entries["d/f4.txt"]
    blob = _blob(storage_root, entry)
    kept = blob.read_bytes()
    blob.unlink()
    failed, cached = pull_refused(volume, tmp_path / "reader", BlobMissing, holder="reader")
    assert entry.hash in str(failed) and "does not exist" in str(failed)
    assert not os.path.lexists(cached.tree / "d" / "f4.txt")
    blob.write_bytes(kept)
    remote, lease, cached, _, stats = checkout(volume, tmp_path / "reader", holder="reader")
    remote.release(lease)
    assert (cached.tree / "d" / "f4.txt").read_bytes() == kept


def test_a_pull_puts_back_the_time_of_a_file_whose_content_is_the_generations(volume, tmp_path):
    """A failed job that only touched a file, or a pull killed between a file's bytes and its time: the content is
    right, its time is not; the pull that puts the generation back must set it, or the tree is not the generation."""
    commit(volume, tmp_path / "writer", _write)
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "writer")
    try:
        os.utime(cached.tree / "d" / "f2.txt", ns=(5, 5))
        os.chmod(cached.tree / "d" / "f1.txt", 0o644)
        again, stats = sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    assert stats.files_pulled == 0
    assert os.lstat(cached.tree / "d" / "f2.txt").st_mtime_ns == base.entries["d/f2.txt"].mtime_ns
    assert os.lstat(cached.tree / "d" / "f1.txt").st_mode & 0o777 == 0o400
    rescanned, _, _ = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert {p: e[:7] for p, e in rescanned.entries.items()} == {p: e[:7] for p, e in base.entries.items()}
