import os
import time

import pytest

from volumes.engine import leases, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import Entry, Manifest
from volumes.engine.remote import DirectRemote
from volumes.exceptions import IntegrityError, LeaseLost, LimitExceeded
from volumes.storage.localfiles import stat_key
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


class ChangesFileBeforeUpload(DirectRemote):
    """A process that outlived its job rewrites a file after the push hashed it, before its upload; `same_times`:
    and sets its times back, so only its ctime (which no process can set) tells the change."""

    same_times = False

    def upload_blob(self, lease, digest, local_path, hashed_as=None):
        before = os.stat(local_path)
        with open(local_path, "r+b") as fh:
            fh.write(b"X")
        if self.same_times:
            os.utime(local_path, ns=(before.st_atime_ns, before.st_mtime_ns))
        super().upload_blob(lease, digest, local_path, hashed_as)


class ChangesFileKeepingItsTimes(ChangesFileBeforeUpload):
    same_times = True


@pytest.mark.parametrize("writer", [ChangesFileBeforeUpload, ChangesFileKeepingItsTimes])
def test_a_file_changed_between_hashing_and_upload_fails_the_push_and_is_never_stored_under_that_hash(
        volume, tmp_path, writer):
    from volumes.storage.factory import store_for_storage
    from volumes.storage.keys import blob_key, volume_prefix

    # A file rewritten where the base has it is uploaded after the scan (one at a new path is copied into a
    # local store as it is hashed: no window there, test_staged_push.py).
    commit(volume, tmp_path / "a", lambda tree: (tree / "data.bin").write_bytes(b"the first version"))
    _, lease, cached, base, _ = checkout(volume, tmp_path / "a")
    (cached.tree / "data.bin").write_bytes(b"what the job wrote" * 1000)
    digest = sync.hash_file(cached.tree / "data.bin")
    try:
        with pytest.raises(IntegrityError, match="changed while it was uploaded"):
            sync.push(writer(), lease, cached, base)
    finally:
        leases.release(lease)
    store = store_for_storage(volume.storage)
    assert not store.exists(blob_key(volume_prefix(volume.workspace_id, volume.name), digest))
    assert Volume.objects.get(pk=volume.pk).generation == 1


@pytest.mark.parametrize("where", ["new path", "known path"])
def test_a_file_written_between_the_walk_and_its_hash_is_committed_as_it_was_read(volume, tmp_path, monkeypatch,
                                                                                 where):
    """A process that outlived its job appends to a file after the walk's lstat, before the scan reads it: the
    entry must describe the bytes that were hashed (their size), not the stat from before the write."""
    if where == "known path":
        commit(volume, tmp_path / "a", lambda tree: (tree / "data.bin").write_bytes(b"the first version"))
    real = sync._hash_all

    def appended_first(tree, to_hash, threads, stage=None):
        with open(os.path.join(tree, "data.bin"), "ab") as fh:
            fh.write(b" and what came after the walk")
        return real(tree, to_hash, threads, stage)

    monkeypatch.setattr(sync, "_hash_all", appended_first)
    stats = commit(volume, tmp_path / "a", lambda tree: (tree / "data.bin").write_bytes(b"what the job wrote"))
    assert stats.committed_generation == (2 if where == "known path" else 1)
    monkeypatch.undo()
    _, lease, reader, base, _ = checkout(volume, tmp_path / "reader")
    leases.release(lease)
    content = b"what the job wrote and what came after the walk"
    assert (reader.tree / "data.bin").read_bytes() == content
    entry = base.entries["data.bin"]
    assert (entry.size, entry.hash) == (len(content), sync.hash_file(reader.tree / "data.bin"))


@pytest.mark.parametrize("where", ["new path", "known path"])
def test_a_file_swapped_for_a_link_before_its_hash_never_brings_the_links_target_into_the_volume(
        volume, tmp_path, storage_root, monkeypatch, where):
    """A process that outlived its job puts a link to a secret of the worker where the walk saw a file, before the
    scan reads it: a file at a new path is hashed as it is copied into the store, one the base has is hashed alone.
    Neither read follows the link, so the push fails and the secret is stored nowhere."""
    secret = tmp_path / "worker-secret"
    secret.write_bytes(b"the worker's database password")
    if where == "known path":
        commit(volume, tmp_path / "a", lambda tree: (tree / "data.bin").write_bytes(b"the first version"))
    real = sync._hash_all

    def swapped_first(tree, to_hash, threads, stage=None):
        target = os.path.join(tree, "data.bin")
        os.unlink(target)
        os.symlink(secret, target)
        return real(tree, to_hash, threads, stage)

    _, lease, cached, base, _ = checkout(volume, tmp_path / "a")
    (cached.tree / "data.bin").write_bytes(b"what the job wrote")
    monkeypatch.setattr(sync, "_hash_all", swapped_first)
    try:
        with pytest.raises(OSError):
            sync.push(DirectRemote(), lease, cached, base)
    finally:
        leases.release(lease)
    stored = [p.read_bytes() for p in storage_root.rglob("*") if p.is_file()]
    assert not any(b"password" in data for data in stored)
    assert Volume.objects.get(pk=volume.pk).generation == (1 if where == "known path" else 0)


def test_a_push_strips_setuid_setgid_and_sticky_bits_in_the_tree_it_commits(volume, tmp_path):
    """The commit never holds them; the tree must not keep them either, or it would not be the committed generation
    (a job's next pull trusts the cache as clean) and a setuid file would stay in the worker's cache."""
    def special(tree):
        (tree / "suid").write_text("#!/bin/sh\n")
        os.chmod(tree / "suid", 0o4755)
        (tree / "sgid-dir").mkdir()
        os.chmod(tree / "sgid-dir", 0o2770)
        (tree / "sticky").mkdir()
        os.chmod(tree / "sticky", 0o1777)

    stats = commit(volume, tmp_path / "a", special)
    tree = WorkerCache(tmp_path / "a", 10**12).volume("acme", volume.name).tree
    modes = {name: os.lstat(tree / name).st_mode & 0o7777 for name in ("suid", "sgid-dir", "sticky")}
    assert stats.committed_generation == 1
    assert modes == {"suid": 0o755, "sgid-dir": 0o770, "sticky": 0o777}
    _, lease, cached, base, pulled = checkout(volume, tmp_path / "a")  # the tree is the generation: nothing to do
    leases.release(lease)
    assert pulled.files_pulled == 0  # hashed again or not, depending on whether the chmod moved the ctime a tick


def test_the_synced_manifest_is_kept_compact_and_the_copies_of_older_versions_are_still_read(volume, tmp_path):
    import marshal

    from volumes.engine import cache as cache_module

    commit(volume, tmp_path, populate)
    _, lease, cached, base, _ = checkout(volume, tmp_path)
    leases.release(lease)
    assert (cached.root / "manifest.bin").exists() and not (cached.root / "manifest.json").exists()
    cache_module._MEMO.clear()  # as a fresh worker process
    loaded = cached.synced_manifest(lease.manifest_key)
    assert loaded == base and loaded.generation == base.generation == 1
    assert all(type(e) is Entry for e in loaded.entries.values()) and hash(loaded.entries["notes.txt"])
    assert list(loaded.entries) == list(base.entries)
    rows = [tuple(e) for e in base.entries.values()]  # a tuple per entry, as versions before 2026-12-07 wrote it
    (cached.root / "manifest.bin").write_bytes(marshal.dumps((base.generation, rows, base.runs)))
    cache_module._MEMO.clear()
    assert cached.synced_manifest(lease.manifest_key) == base
    (cached.root / "manifest.bin").unlink()
    (cached.root / "manifest.json").write_bytes(base.to_json())  # what an older version left
    cache_module._MEMO.clear()
    assert cached.synced_manifest(lease.manifest_key) == base
    _, lease, cached, _, pulled = checkout(volume, tmp_path)
    leases.release(lease)
    assert pulled.files_pulled == pulled.files_hashed == 0


@pytest.mark.parametrize("threads", [1, 4])
def test_a_scan_of_big_and_small_files_gives_each_file_its_own_hash(tmp_path, threads):
    # Big files are hashed on threads while this thread hashes the small ones: each hash must still land
    # on its own file, whatever order they finish in.
    import hashlib

    contents = {}
    for i in range(12):
        size = sync.BIG_FILE + i if i % 3 == 0 else 100 + i
        contents[f"d{i % 2}/f{i:02d}"] = os.urandom(size)
    for path, data in contents.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_bytes(data)
    manifest, hashes, hashed = sync.scan(tmp_path, {}, threads=threads)
    assert hashed == 12
    assert {e.path: e.hash for e in manifest.files} == {p: hashlib.sha256(d).hexdigest() for p, d in contents.items()}
    assert {p: r[5] for p, r in hashes.items()} == {e.path: e.hash for e in manifest.files}


def test_a_scan_that_finds_every_record_good_hands_back_the_hash_cache_itself_and_otherwise_only_good_records(
        tmp_path):
    """A job's end on 100,000 unchanged files must not copy the hash cache (5 MB of dict); once anything changed,
    the new cache holds exactly one record a file, each of the file's present stat, and none for a file gone."""
    for i in range(6):
        (tmp_path / f"f{i}").write_text(f"file {i}")
    (tmp_path / "d").mkdir()
    time.sleep(2 * sync.RACY_NS / 1e9)  # out of the clock tick of the writes: the records are kept
    _, first, _ = sync.scan(tmp_path, {})
    first = dict(first)
    manifest, again, hashed = sync.scan(tmp_path, first)
    assert hashed == 0 and again is first

    (tmp_path / "f0").unlink()
    (tmp_path / "f1").write_text("changed")
    (tmp_path / "f2").unlink()
    (tmp_path / "f2").mkdir()  # a file that became a folder
    (tmp_path / "new").write_text("new")
    time.sleep(2 * sync.RACY_NS / 1e9)
    manifest, records, hashed = sync.scan(tmp_path, first)
    assert hashed == 2 and records is not first
    assert set(records) == {e.path for e in manifest.files} == {"f1", "f3", "f4", "f5", "new"}
    for path, record in records.items():
        assert list(record[:5]) == list(stat_key(os.lstat(tmp_path / path)))
        assert record[5] == manifest.entries[path].hash
    assert all(records[p] is first[p] for p in ("f3", "f4", "f5"))


def test_a_pulled_link_keeps_its_stored_time_so_an_unchanged_tree_scans_as_the_base_itself(volume, tmp_path):
    """A link made by a pull got the time of the pull, not the one stored: every push after saw it as new, built a
    new manifest and compared the whole volume to learn nothing changed (and a commit rewrote the link's time)."""
    def write(tree):
        (tree / "d").mkdir()
        (tree / "d" / "f.txt").write_text("data")
        os.symlink("f.txt", tree / "d" / "link")
        os.utime(tree / "d" / "link", ns=(10**18, 10**18), follow_symlinks=False)

    commit(volume, tmp_path / "writer", write)
    for cache in ("reader", "reader"):  # a cold pull, then a pull over the same cache
        remote, lease, cached, base, _ = checkout(volume, tmp_path / cache)
        remote.release(lease)
        assert os.lstat(cached.tree / "d" / "link").st_mtime_ns == base.entries["d/link"].mtime_ns == 10**18
        scanned, _, _ = sync.scan(cached.tree, cached.load_hashes(), base=base)
        assert all(scanned.entries[p] is e for p, e in base.entries.items()) and len(scanned.entries) == len(base.entries)
        os.utime(cached.tree / "d" / "link", ns=(5, 5), follow_symlinks=False)  # a job touched it: the pull puts it back


def test_diff_agrees_with_its_definition_whatever_was_shared_added_changed_or_deleted():
    """diff skips what is the base's own entry and the pass over the base when nothing was deleted; the result must
    be what comparing every path gives."""
    import random

    from volumes.engine.manifest import diff

    rng = random.Random(7)
    for _ in range(300):
        base = Manifest({f"f{i}": Entry(f"f{i}", "file", i, f"{i:064x}", 0o644, i) for i in range(rng.randint(0, 12))})
        entries = dict(base.entries)
        for path in list(entries):
            roll = rng.random()
            if roll < 0.15:
                del entries[path]
            elif roll < 0.3:
                entries[path] = entries[path]._replace(size=99, hash="f" * 64)  # changed
            elif roll < 0.45:
                entries[path] = Entry(*entries[path])  # equal, not the base's own object
            elif roll < 0.55:
                entries[path] = entries[path]._replace(mtime_ns=5)  # a time alone: not a change
        for i in range(rng.randint(0, 3)):
            entries[f"new{i}"] = Entry(f"new{i}", "file", 1, "e" * 64, 0o644, 1)
        new = Manifest(entries)
        old = base.entries
        expected = ([e for p, e in entries.items() if p not in old],
                    [e for p, e in entries.items() if p in old and not e.same_content(old[p])],
                    [e for p, e in old.items() if p not in entries])
        assert diff(base, new) == expected


def test_a_folder_swapped_for_a_link_while_the_walk_is_on_its_way_is_never_listed_through_it(tmp_path):
    """The walk opens each folder it found without following a link: a folder that became a link to somewhere
    else after its parent was listed (a process the job left behind) makes the scan fail, so nothing of that
    place is ever read, hashed or committed as the volume's."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not the volume's")
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "kept").write_text("kept")
    walk = sync._Walk({}, {}, 0o7777, None)
    walk.folders([(str(tree), "")])  # as the parent's listing found it: a folder
    assert set(walk.entries) == {"data"} and [item[0] for item in walk.to_hash] == ["data/kept"]
    os.rename(tree / "data", tmp_path / "moved")
    (tree / "data").symlink_to(outside)
    walk = sync._Walk({}, {}, 0o7777, None)
    with pytest.raises(OSError):
        walk.folders([(str(tree / "data"), "data/")])
    assert not walk.entries and not walk.to_hash
