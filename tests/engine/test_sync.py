import os
import time

import pytest

from volumes.engine import leases, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import Entry, Manifest
from volumes.engine.remote import DirectRemote
from volumes.exceptions import IntegrityError, LeaseLost, LimitExceeded
from volumes.models import Volume

from .helpers import checkout, commit, tree_listing


def populate(tree):
    (tree / "models" / "v1").mkdir(parents=True)
    (tree / "models" / "v1" / "weights.bin").write_bytes(os.urandom(300_000))
    (tree / "notes.txt").write_text("hello")
    (tree / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(tree / "run.sh", 0o755)
    (tree / "empty-dir").mkdir()
    (tree / "spaces and ünïcode é.txt").write_text("names keep their bytes")
    os.symlink("models/v1/weights.bin", tree / "latest")
    os.symlink("/etc/passwd", tree / "outside")
    os.symlink("does-not-exist", tree / "dangling")


def test_a_pushed_tree_comes_back_identical_in_a_fresh_cache(volume, tmp_path):
    stats = commit(volume, tmp_path / "a", populate)
    assert stats.committed_generation == 1
    original = tree_listing(WorkerCache(tmp_path / "a", 10**12).volume("acme", volume.name).tree)
    _, lease, cached, base, pulled = checkout(volume, tmp_path / "b")
    assert tree_listing(cached.tree) == original
    assert os.readlink(cached.tree / "outside") == "/etc/passwd"  # kept as a link, not its content
    assert pulled.files_pulled == 4 and base.generation == 1
    volume.refresh_from_db()
    assert volume.file_count == 7 and volume.size_bytes == base.size_bytes > 300_000


def test_an_unchanged_volume_current_in_the_cache_transfers_and_hashes_nothing(volume, tmp_path):
    commit(volume, tmp_path, populate)
    remote, lease, cached, base, stats = checkout(volume, tmp_path)
    assert (stats.files_pulled, stats.files_hashed) == (0, 0)
    pushed = sync.push(remote, lease, cached, base)
    remote.release(lease)
    assert (pushed.files_pushed, pushed.files_hashed, pushed.committed_generation) == (0, 0, None)
    volume.refresh_from_db()
    assert volume.generation == 1


def test_deleted_files_stay_deleted_and_entries_record_their_generation(volume, tmp_path):
    commit(volume, tmp_path, populate)
    commit(volume, tmp_path, lambda t: ((t / "notes.txt").unlink(), (t / "new.txt").write_text("2")))
    _, lease, cached, base, _ = checkout(volume, tmp_path / "other")
    assert not (cached.tree / "notes.txt").exists()
    assert base.entries["new.txt"].gen == 2 and base.entries["run.sh"].gen == 1
    assert volume.commits.get(generation=2).files_deleted == 1


def test_local_changes_are_undone_by_the_next_pull(volume, tmp_path):
    commit(volume, tmp_path, populate)
    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    (cached.tree / "notes.txt").write_text("scribbled")
    (cached.tree / "stray").write_text("x")
    os.unlink(cached.tree / "latest")
    sync.pull(remote, lease, cached)
    remote.release(lease)
    assert (cached.tree / "notes.txt").read_text() == "hello"
    assert not (cached.tree / "stray").exists()
    assert os.readlink(cached.tree / "latest") == "models/v1/weights.bin"


def test_hard_links_become_files_and_fifos_are_skipped_with_a_warning(volume, tmp_path):
    def mutate(tree):
        (tree / "a").write_text("same inode")
        os.link(tree / "a", tree / "b")
        os.mkfifo(tree / "pipe")

    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    mutate(cached.tree)
    logs = []
    sync.push(remote, lease, cached, base, log=logs.append)
    remote.release(lease)
    assert any("pipe" in line and "FIFO" in line for line in logs)
    _, _, fresh, manifest, _ = checkout(volume, tmp_path / "fresh")
    assert set(manifest.entries) == {"a", "b"}
    assert os.stat(fresh.tree / "a").st_ino != os.stat(fresh.tree / "b").st_ino


def test_a_file_over_the_edition_limit_fails_the_push_naming_it(volume, tmp_path, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1000}
    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    (cached.tree / "ok.txt").write_text("fine")
    (cached.tree / "big.bin").write_bytes(b"x" * 1001)
    with pytest.raises(LimitExceeded, match="big.bin"):
        sync.push(remote, lease, cached, base)
    remote.release(lease)
    volume.refresh_from_db()
    assert volume.generation == 0


def test_the_volume_size_cap_refuses_a_push_with_size_and_limit(volume, tmp_path):
    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    (cached.tree / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(LimitExceeded, match="5,000 bytes.*4,096"):
        sync.push(remote, lease, cached, base, max_volume_size=4096)
    remote.release(lease)
    assert Volume.objects.get(pk=volume.pk).generation == 0


def test_a_pull_never_writes_through_a_link_in_the_cache(volume, tmp_path):
    commit(volume, tmp_path / "a", lambda t: ((t / "dir").mkdir(), (t / "dir" / "f.txt").write_text("in volume")))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("sentinel")
    cache = WorkerCache(tmp_path / "b", 10**12).volume("acme", volume.name)
    cache.tree.mkdir(parents=True)
    os.symlink(outside, cache.tree / "dir")  # a damaged or hostile cache
    remote = DirectRemote()
    lease = remote.acquire("acme", volume.name, "t")
    sync.pull(remote, lease, cache)
    remote.release(lease)
    assert (outside / "f.txt").read_text() == "sentinel"
    assert not (cache.tree / "dir").is_symlink() and (cache.tree / "dir" / "f.txt").read_text() == "in volume"


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", "a\\b", "x\x00y"])
def test_a_forged_manifest_with_an_unsafe_path_is_refused(path):
    forged = Manifest({path: Entry(path, "file", 1, "0" * 64)})
    with pytest.raises(IntegrityError):
        Manifest.from_json(forged.to_json())


def test_a_push_with_a_lost_lease_commits_nothing(volume, tmp_path):
    commit(volume, tmp_path, populate)
    remote = DirectRemote()
    stale = leases.acquire(volume.pk, "paused", ttl=0.2)
    cached = WorkerCache(tmp_path, 10**12).volume("acme", volume.name)
    base, _ = sync.pull(remote, stale, cached)
    (cached.tree / "late.txt").write_text("too late")
    time.sleep(0.3)
    newer = leases.acquire(volume.pk, "newer", wait=0)
    with pytest.raises(LeaseLost):
        sync.push(remote, stale, cached, base)
    leases.release(newer)
    assert Volume.objects.get(pk=volume.pk).generation == 1


def test_a_damaged_blob_is_detected_on_pull(volume, tmp_path, storage_root):
    commit(volume, tmp_path / "a", lambda t: (t / "f.txt").write_text("original"))
    blobs = list(storage_root.rglob("blobs/*"))
    assert len(blobs) == 1
    blobs[0].write_text("tampered")
    with pytest.raises(IntegrityError, match="does not match its hash"):
        checkout(volume, tmp_path / "b")
