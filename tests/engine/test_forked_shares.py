"""A scan's hashing, a big pull from a local store and a push's uploads are shared with a forked process
(sync.SHARE_AFTER).
Whatever the split, the work must come out exactly as one process does it: the same entries, hash cache
records, files hashed, warnings and skipped paths, the same tree; a failing child must cost only time, an error
in its share must be the same error; a change in the clock tick of the last scan is still seen.

A scan walks the tree in one process and shares the files it has to hash (a walk alone is not worth a fork),
copying those at new paths into a local store as it hashes them (test_staged_push.py); a pull shares the files it
fetches, a push the uploads of files it did not copy so. Both processes take runs of them from one queue (forked.share), so
the faster one does more.
"""
import hashlib
import os
import stat
import time

import pytest

from volumes.engine import forked, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.exceptions import IntegrityError
from volumes.engine.manifest import Manifest
from volumes.exceptions import LimitExceeded
from volumes.models import Volume

from tests.servers import use_storage

from .helpers import checkout, commit, pull_refused, tree_listing
from .test_change_detection import coarse_fs, within_one_second  # noqa: F401 - a fixture


@pytest.fixture
def forks(monkeypatch):
    """Force sharing on any tree of two folders or more; counts the forks made (in this process)."""
    made = []
    real_fork = os.fork

    def counted_fork():
        pid = real_fork()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(sync, "SHARE_AFTER", 1)
    monkeypatch.setattr(forked, "cores", lambda: 2)
    monkeypatch.setattr(forked.os, "fork", counted_fork)
    return made


def one_process(monkeypatch):
    monkeypatch.setattr(forked, "cores", lambda: 1)


def build(tree):
    """Twelve folders of files, links, odd modes, a setuid file, a FIFO and a name no volume can hold."""
    for i in range(12):
        folder = tree / f"d{i:02d}"
        (folder / "deeper").mkdir(parents=True)
        for j in range(5):
            (folder / f"f{j}.txt").write_text(f"{i}-{j}")
        (folder / "deeper" / "x.bin").write_bytes(bytes([i]) * (100 + i))
        os.symlink(f"f{i % 5}.txt", folder / "link")
    os.chmod(tree / "d03" / "deeper", 0o750)
    os.chmod(tree / "d05" / "f1.txt", 0o4755)  # setuid: a push takes it off
    os.mkfifo(tree / "d07" / "pipe")
    (tree / "d09" / "back\\slash").write_text("no volume holds this name")


def scan_twice(tree, base=None, **kwargs):
    """A scan with no hash cache, a change in three folders, then a scan with the first scan's cache.
    The tree is older than a clock tick when it is first scanned, so only the setuid file a push's chmod changed is
    in the tick of its change (sync._settle)."""
    time.sleep(2 * sync.RACY_NS / 1e9)
    first, hashes, _ = sync.scan(tree, {}, base=base, **kwargs)
    (tree / "d01" / "f2.txt").write_text("changed in the child's share")
    (tree / "d02" / "f3.txt").unlink()
    (tree / "d11" / "new.txt").write_text("added")
    warnings, skipped = [], []
    second = sync.scan(tree, hashes, base=first, warn=warnings.append, skipped=skipped, **kwargs)
    return first, second, sorted(warnings), sorted(skipped)


@pytest.mark.parametrize("strip", [False, True])
def test_a_shared_scan_finds_exactly_what_one_process_finds(tmp_path, monkeypatch, forks, strip):
    build(tmp_path / "a")
    build(tmp_path / "b")
    os.utime(tmp_path / "b" / "d05" / "f1.txt", ns=(0, os.stat(tmp_path / "a" / "d05" / "f1.txt").st_mtime_ns))
    shared = scan_twice(tmp_path / "a", strip=strip)
    assert len(forks) == 2, "the scans were not shared with a second process"
    one_process(monkeypatch)
    alone = scan_twice(tmp_path / "b", strip=strip)
    assert len(forks) == 2

    (first_s, (second_s, records_s, hashed_s), warnings_s, skipped_s) = shared
    (first_a, (second_a, records_a, hashed_a), warnings_a, skipped_a) = alone
    assert set(second_s.entries) == set(second_a.entries)
    for path, entry in second_s.entries.items():
        other = second_a.entries[path]
        assert (entry.type, entry.size, entry.hash, entry.mode, entry.target) == (
            other.type, other.size, other.hash, other.mode, other.target), path
        if entry.type == "file":
            assert entry.hash == hashlib.sha256((tmp_path / "a" / path).read_bytes()).hexdigest()
    assert "d11/new.txt" in second_s.entries and "d02/f3.txt" not in second_s.entries
    assert second_s.entries["d01/f2.txt"].hash == hashlib.sha256(b"changed in the child's share").hexdigest()
    # Only the changed and the added file are read again: the file whose setuid bit a push took off is recorded
    # as it was read, after the chmod, so the next scan vouches for it.
    assert hashed_s == hashed_a == 2
    assert set(records_s) == set(records_a) == {e.path for e in second_s.files}
    assert warnings_s == warnings_a and len(warnings_s) == 2
    assert skipped_s == skipped_a == ["d07/pipe", "d09/back\\slash"]
    # What the scan found unchanged is its base's own entry, from either process (a diff then sees it at once).
    unchanged = [p for p in first_s.entries if p in second_s.entries and p not in ("d01/f2.txt", "d05/f1.txt")]
    assert all(second_s.entries[p] is first_s.entries[p] for p in unchanged)
    assert bool(stat.S_IMODE(os.stat(tmp_path / "a" / "d05" / "f1.txt").st_mode) & 0o4000) is not strip


def test_only_a_scan_with_many_files_to_hash_forks(tmp_path, monkeypatch, forks):
    """A fork of a worker holding a big manifest costs more than half a walk that the hash cache vouches for."""
    monkeypatch.setattr(sync, "SHARE_AFTER", 20)
    for i in range(40):
        (tmp_path / f"d{i % 4}").mkdir(exist_ok=True)
        (tmp_path / f"d{i % 4}" / f"f{i}.txt").write_text(f"file {i}")
    first, hashes, hashed = sync.scan(tmp_path, {})
    assert hashed == 40 and len(forks) == 1
    again, hashes, hashed = sync.scan(tmp_path, hashes, base=first)
    assert hashed == 0 and len(forks) == 1, "a walk with nothing to hash was shared"
    for i in range(19):
        (tmp_path / f"d{i % 4}" / f"f{i}.txt").write_text(f"changed {i}")
    changed, _, hashed = sync.scan(tmp_path, hashes, base=again)
    assert hashed == 19 and len(forks) == 1
    assert changed.entries["d0/f0.txt"].hash == hashlib.sha256(b"changed 0").hexdigest()


def failing_hash(monkeypatch, fails):
    """A scan's hash raises for the path `fails(path)` picks, in whichever process it runs."""
    real = sync.hash_and_stat

    def hash_and_stat(path):
        if fails(path):
            raise OSError(5, "Input/output error", path)
        return real(path)

    monkeypatch.setattr(sync, "hash_and_stat", hash_and_stat)


def test_a_file_that_cannot_be_read_in_the_childs_share_fails_the_scan_as_in_one_process(tmp_path, monkeypatch,
                                                                                          forks):
    build(tmp_path)
    failing_hash(monkeypatch, lambda path: path.endswith("d01/deeper/x.bin"))
    with pytest.raises(OSError) as shared:
        sync.scan(tmp_path, {})
    assert forks, "the hashing was not shared"
    one_process(monkeypatch)
    with pytest.raises(OSError) as alone:
        sync.scan(tmp_path, {})
    assert str(shared.value) == str(alone.value) and "d01/deeper/x.bin" in str(shared.value)


def test_a_child_that_fails_leaves_its_share_to_the_parent(tmp_path, monkeypatch, forks):
    build(tmp_path)
    expected, _, _ = sync.scan(tmp_path, {})
    parent = os.getpid()
    failing_hash(monkeypatch, lambda path: os.getpid() != parent)  # the forked child fails on its first file
    found, records, hashed = sync.scan(tmp_path, {})
    assert forks
    assert {p: e[:7] for p, e in found.entries.items()} == {p: e[:7] for p, e in expected.entries.items()}
    assert hashed == len(records) == sum(1 for _ in expected.files)


def test_the_shared_scan_leaves_no_process_behind_when_the_parent_fails(tmp_path, monkeypatch, forks):
    build(tmp_path)
    parent = os.getpid()
    failing_hash(monkeypatch, lambda path: os.getpid() == parent)  # the parent's share fails while the child hashes
    with pytest.raises(OSError):
        sync.scan(tmp_path, {})
    assert forks
    for pid in forks:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already


def test_a_rewrite_in_the_same_second_in_the_childs_share_is_found(coarse_fs, monkeypatch, forks):  # noqa: F811
    targets = []
    for i in range(4):  # the child hashes every other one of these
        (coarse_fs / f"d{i}").mkdir()
        targets.append(coarse_fs / f"d{i}" / "a.txt")
    rounds = []

    def attempt():
        for target in targets:
            target.write_text(f"v{len(rounds) % 10}")
        manifest, hashes, _ = sync.scan(coarse_fs, {})
        for target in targets:
            target.write_text(f"w{len(rounds) % 10}")  # same size, same second: the same stat on this filesystem
        rounds.append(1)
        return hashes

    hashes = within_one_second(attempt)
    assert forks
    again, _, hashed = sync.scan(coarse_fs, hashes, base=Manifest())
    for target in targets:
        assert again.entries[str(target.relative_to(coarse_fs))].hash == hashlib.sha256(target.read_bytes()).hexdigest()
    assert hashed == 4


def _rewrite(tree):
    """A new content for every file of _write, at the same paths: uploaded after the scan (a file at a new path is
    copied into a local store as it is hashed, test_staged_push.py)."""
    for path in sorted(tree.rglob("f*.txt")):
        path.write_text(f"rewritten {path.relative_to(tree)}")


def _write(tree):
    for i in range(6):
        folder = tree / f"d{i}"
        folder.mkdir()
        for j in range(7):
            (folder / f"f{j}.txt").write_text(f"file {i}/{j}")
            os.utime(folder / f"f{j}.txt", ns=(10**18 + j, 10**18 + i * 100 + j))
        os.chmod(folder / "f3.txt", 0o600)


@pytest.mark.django_db(transaction=True)
def test_a_pull_shared_with_a_second_process_makes_the_tree_exactly_the_generation(volume, tmp_path, forks):
    commit(volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    forks.clear()
    remote, lease, cached, base, stats = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    assert len(forks) == 1, "the pull was not shared"
    assert stats.files_pulled == 42
    assert tree_listing(cached.tree) == tree_listing(writer)
    assert {p: os.lstat(cached.tree / p).st_mtime_ns for p in base.entries if p.endswith(".txt")} == {
        e.path: e.mtime_ns for e in base.files}
    # Every file's hash cache record is its own stat and hash: the next scan reads nothing again.
    again, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0 and all(again.entries[p] is base.entries[p] for p in base.entries)
    assert not os.listdir(cached.staging)


@pytest.mark.django_db(transaction=True)
def test_a_damaged_blob_in_the_childs_share_fails_the_pull_as_in_one_process(volume, tmp_path, storage_root, forks):
    commit(volume, tmp_path / "writer", _write)
    remote, lease, _, base, _ = checkout(volume, tmp_path / "writer")
    remote.release(lease)
    damaged = list(base.files)[1]  # the first file of the child's share
    blob = next(storage_root.rglob(f"blobs/{damaged.hash}"))
    os.chmod(blob, 0o644)
    blob.write_bytes(b"not what was stored")
    forks.clear()
    failed, cached = pull_refused(volume, tmp_path / "reader", IntegrityError, holder="reader")
    assert forks, "the pull was not shared"
    assert repr(damaged.path) in str(failed) and "does not match its hash" in str(failed)
    assert not os.listdir(cached.staging)


@pytest.mark.django_db(transaction=True)
def test_a_pull_whose_child_dies_is_finished_by_the_parent(volume, tmp_path, monkeypatch, forks):
    commit(volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    real = forked.run_in_child
    # The child dies after doing its work, before it can send anything back.
    monkeypatch.setattr(forked, "run_in_child", lambda work: real(lambda: (work(), os._exit(3))))
    forks.clear()
    remote, lease, cached, base, stats = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    assert forks and stats.files_pulled == 42
    assert tree_listing(cached.tree) == tree_listing(writer)
    _, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0


@pytest.mark.django_db(transaction=True)
def test_a_pull_whose_forked_process_is_slow_leaves_the_most_to_the_parent(volume, tmp_path, monkeypatch, forks):
    """A forked process is the slower of the two (every page either writes is copied first). Split in halves,
    the parent finished its half and then waited for the child's; from one queue of runs, it takes more."""
    commit(volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    parent, real, log = os.getpid(), sync._copy_new, tmp_path / "copies-by-pid"

    def logged_copy(source, full, entry):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        if os.getpid() != parent:
            time.sleep(0.05)
        return real(source, full, entry)

    monkeypatch.setattr(sync, "_copy_new", logged_copy)
    forks.clear()
    remote, lease, cached, base, stats = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    copies = log.read_text().split()
    assert len(forks) == 1 and stats.files_pulled == 42 and len(copies) == 42
    assert copies.count(str(parent)) > 30, copies  # halves: 21
    assert tree_listing(cached.tree) == tree_listing(writer)
    _, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0


def test_a_shared_list_is_done_once_an_item_in_order_also_when_the_child_fails_after_taking_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(forked, "cores", lambda: 2)
    parent, marks = os.getpid(), tmp_path / "in-child"

    def do(run):
        if os.getpid() != parent and run[0] >= 30:
            os._exit(3)  # dies holding a run it took
        return [item * 2 for item in run]

    class InChild:
        def __enter__(self):
            marks.write_text(str(os.getpid()))

        def __exit__(self, *exc):
            return False

    landed = []
    forked.share(list(range(100)), do, lambda item, result: landed.append((item, result)), size=5, in_child=InChild)
    assert sorted(landed) == [(i, 2 * i) for i in range(100)]
    assert marks.read_text() != str(parent)  # what the child runs inside ran there only

    monkeypatch.setattr(forked, "cores", lambda: 1)  # one core: no process is forked, the same results
    landed.clear()
    marks.unlink()
    forked.share(list(range(100)), do, lambda item, result: landed.append((item, result)), size=5, in_child=InChild)
    assert sorted(landed) == [(i, 2 * i) for i in range(100)] and not marks.exists()


@pytest.fixture
def gcs_volume(workspace, cast, request, tmp_path):
    """A volume on a GCS emulator's bucket: a store whose downloads a fork may share (its own connections)."""
    from volumes.services.volumes import volume_create

    use_storage(workspace, "gcs", request, tmp_path)
    return volume_create(workspace, "on-gcs", owner=cast["owner"])


def _transfers_by_process(monkeypatch, tmp_path):
    """A file of the GCS store's requests in every process: "get:PID" a download (a blob's, a manifest
    part's), "put:PID" a blob's upload, "pool:PID" a connection pool made for them. The parent's are slowed down
    a little, so that the forked process surely takes a share of the queue."""
    from volumes.storage.gcs import GCSStore

    log = tmp_path / "transfers-by-pid"
    parent = os.getpid()

    def logged(line):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"{line}:{os.getpid()}\n".encode())
        os.close(fd)
        if os.getpid() == parent:
            time.sleep(0.005)  # the child takes runs from the queue too, however fast this process is

    download, upload, new_pool = GCSStore._download, GCSStore._upload, GCSStore._new_pool

    def logged_download(self, key, consume):
        logged("get")
        return download(self, key, consume)

    def logged_upload(self, key, data, create_only):
        logged("put" if "/blobs/" in key else "put-other")  # a manifest part, the store's probe of its server
        return upload(self, key, data, create_only)

    def logged_pool(self):
        logged("pool")
        return new_pool(self)

    monkeypatch.setattr(GCSStore, "_download", logged_download)
    monkeypatch.setattr(GCSStore, "_upload", logged_upload)
    monkeypatch.setattr(GCSStore, "_new_pool", logged_pool)
    return lambda: log.read_text().split() if log.exists() else []


@pytest.mark.django_db(transaction=True)
def test_a_big_pull_from_gcs_shares_its_downloads_with_a_second_process_over_its_own_connections(
        gcs_volume, tmp_path, monkeypatch, forks):
    """A GCS download is about 1 ms of Python; eight threads of one process queue for the GIL (a cold pull of
    10,000 small blobs took 4x rclone's time on the same server). The forked process opens its own connections:
    one it shared with its parent would carry both processes' requests and answers mixed."""
    commit(gcs_volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(gcs_volume.workspace_id, gcs_volume.name).tree
    transfers = _transfers_by_process(monkeypatch, tmp_path)
    forks.clear()
    remote, lease, cached, base, stats = checkout(gcs_volume, tmp_path / "reader")
    remote.release(lease)
    assert len(forks) == 1, "the pull was not shared"
    made = transfers()
    theirs, ours = made.count(f"get:{forks[0]}"), made.count(f"get:{os.getpid()}")
    assert theirs >= 1 and ours >= 1 and theirs + ours >= 42, (forks, made)  # + parts in the parent
    assert made.count(f"pool:{forks[0]}") == 1  # the child made its own (the parent's is from the commit)
    assert stats.files_pulled == 42 and tree_listing(cached.tree) == tree_listing(writer)
    _, _, hashed = sync.scan(cached.tree, cached.load_hashes(), base=base)
    assert hashed == 0 and not os.listdir(cached.staging)


@pytest.mark.django_db(transaction=True)
def test_a_big_push_to_gcs_shares_its_uploads_with_a_second_process_and_stores_every_blob_exactly(
        gcs_volume, tmp_path, monkeypatch, forks):
    from volumes.storage.factory import store_for_volume

    transfers = _transfers_by_process(monkeypatch, tmp_path)
    stats = commit(gcs_volume, tmp_path / "writer", _write)
    assert stats.files_pushed == 42 and len(forks) == 2, "the scan and the uploads were not both shared"
    made = transfers()
    theirs, ours = made.count(f"put:{forks[1]}"), made.count(f"put:{os.getpid()}")
    assert theirs >= 1 and theirs + ours == 42 and made.count(f"pool:{forks[1]}") == 1, (forks, made)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(gcs_volume.workspace_id, gcs_volume.name).tree
    store, prefix = store_for_volume(Volume.objects.get(pk=gcs_volume.pk))
    blobs = {key.rpartition("/")[2]: key for key in store.list(f"{prefix}blobs/")}
    assert set(blobs) == {hashlib.sha256(p.read_bytes()).hexdigest() for p in writer.rglob("f*.txt")}
    assert all(hashlib.sha256(store.get_bytes(key)).hexdigest() == name for name, key in blobs.items())
    remote, lease, cached, _, _ = checkout(gcs_volume, tmp_path / "reader")
    remote.release(lease)
    assert tree_listing(cached.tree) == tree_listing(writer)


@pytest.mark.django_db(transaction=True)
def test_a_gcs_pull_or_push_whose_childs_transfers_fail_is_finished_by_the_parent(gcs_volume, tmp_path, monkeypatch, forks):
    from google.api_core.exceptions import Forbidden

    from volumes.storage.gcs import GCSStore

    commit(gcs_volume, tmp_path / "writer", _write)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(gcs_volume.workspace_id, gcs_volume.name).tree
    parent, real = os.getpid(), GCSStore._http

    def refused_in_the_child(self):
        if os.getpid() != parent:
            raise Forbidden("refused in the forked process")  # not retried: the child fails at once
        return real(self)

    monkeypatch.setattr(GCSStore, "_http", refused_in_the_child)
    forks.clear()
    remote, lease, cached, base, stats = checkout(gcs_volume, tmp_path / "reader")
    remote.release(lease)
    assert forks and stats.files_pulled == 42
    assert tree_listing(cached.tree) == tree_listing(writer) and not os.listdir(cached.staging)

    # A push whose child is refused too: the parent uploads the child's share, and a reader gets every file.
    remote, lease, cached, base, _ = checkout(gcs_volume, tmp_path / "reader")
    (cached.tree / "more").mkdir()
    for i in range(30):
        (cached.tree / "more" / f"{i}.txt").write_text(f"more {i}")
    forks.clear()
    pushed = sync.push(remote, lease, cached, base)
    remote.release(lease)
    assert len(forks) == 2 and pushed.files_pushed == 30
    remote, lease, again, _, _ = checkout(gcs_volume, tmp_path / "third")
    remote.release(lease)
    assert tree_listing(again.tree) == tree_listing(cached.tree)


def _store_files(storage_root):
    """(blob names, temp files) under the store's root."""
    files = [p for p in storage_root.rglob("*") if p.is_file()]
    return ({p.name for p in files if "/blobs/" in str(p) and not p.name.endswith(".volumes-tmp")},
            [p for p in files if p.name.endswith(".volumes-tmp")])


@pytest.mark.django_db(transaction=True)
def test_a_push_shares_its_uploads_with_a_second_process_and_stores_every_blob_exactly(
        volume, tmp_path, storage_root, forks):
    commit(volume, tmp_path / "writer", _write)
    forks.clear()
    stats = commit(volume, tmp_path / "writer", _rewrite)
    assert stats.files_pushed == 42
    assert len(forks) == 2, "the scan and the uploads were not both shared"
    blobs, temps = _store_files(storage_root)
    assert not temps
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in writer.rglob("f*.txt")} <= blobs
    assert len(blobs) == 84
    for name in blobs:  # each stored blob is its own content
        blob = next(storage_root.rglob(f"blobs/{name}"))
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == name
    remote, lease, cached, _, _ = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    assert tree_listing(cached.tree) == tree_listing(writer)


class _ChangesTheChildsShare(DirectRemote):
    """A process that outlived its job rewrites the first file the forked process uploads, just before it does.
    The parent's uploads are slowed down a little, so that the forked process surely takes a share of the queue."""

    parent = os.getpid()
    uploads = 0

    def upload_blob(self, lease, digest, local_path, hashed_as=None):
        if os.getpid() == self.parent:
            time.sleep(0.005)
        else:
            self.uploads += 1
            if self.uploads == 1:
                with open(local_path, "r+b") as fh:
                    fh.write(b"X")
        super().upload_blob(lease, digest, local_path, hashed_as)


@pytest.mark.django_db(transaction=True)
def test_a_change_in_the_childs_share_of_the_uploads_fails_the_push_as_in_one_process(
        volume, tmp_path, storage_root, forks):
    commit(volume, tmp_path / "writer", _write)
    stored = _store_files(storage_root)
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "writer")
    try:
        _rewrite(cached.tree)
        forks.clear()
        with pytest.raises(IntegrityError, match="changed while it was uploaded"):
            sync.push(_ChangesTheChildsShare(), lease, cached, base)
    finally:
        remote.release(lease)
    assert len(forks) == 2
    assert _store_files(storage_root) == stored, "a failed push left blobs or temp files in the store"
    assert Volume.objects.get(pk=volume.pk).generation == 1


@pytest.mark.django_db(transaction=True)
def test_a_push_whose_upload_child_dies_is_finished_by_the_parent(volume, tmp_path, storage_root, monkeypatch, forks):
    real = forked.run_in_child
    calls = []

    def second_child_dies(work):  # the first child shares the scan, the second the uploads
        calls.append(work)
        return real(lambda: (work(), os._exit(3)) if len(calls) == 2 else work())

    commit(volume, tmp_path / "writer", _write)
    monkeypatch.setattr(forked, "run_in_child", second_child_dies)
    stats = commit(volume, tmp_path / "writer", _rewrite)
    assert len(calls) == 2 and stats.files_pushed == 42
    remote, lease, cached, _, _ = checkout(volume, tmp_path / "reader")
    remote.release(lease)
    writer = WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree
    assert tree_listing(cached.tree) == tree_listing(writer)
    # The dead child's temp files are never blobs; the garbage collector removes them (incomplete uploads).
    blobs, temps = _store_files(storage_root)
    assert len(blobs) == 84 and all(t.name.startswith(".") for t in temps)
