"""Pull (remote -> cache) and push (cache -> remote) by diffing manifests.

A pull makes the cache tree exactly the leased generation, transferring only files
whose size and hash differ; a push uploads missing blobs, then commits a new
manifest under the fencing check. Neither ever follows a symlink: links are
entries with their target text, and every write lands beneath the cache root.

One file over 500 lines on purpose: pull and push are two halves of one manifest diff, sharing the scan and path checks.
"""
from __future__ import annotations

import hashlib
import itertools
import operator
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Sequence

from .. import conf
from ..exceptions import IntegrityError
from ..ops import metrics
from . import commits, forked, history
from .cache import CachedVolume, no_cyclic_gc, remove_tree
from .commits import ChangeCounts
from .faults import crash_point
from .leases import Lease
from ..storage.base import sha256_and_stat as hash_and_stat
from ..storage.base import sha256_of_file as hash_file
from ..storage.localfiles import copy_if_unchanged, stat_key
from ..storage.keys import MAX_NAME_BYTES, MAX_PATH_BYTES
from .manifest import DIR, FILE, LINK, MAX_DEPTH, PERMISSIONS, Entry, Manifest, path_problem
from .remote import Remote

Log = Callable[[str], None]
Progress = Callable[[int, int], None]  # (bytes done, bytes total)
CHUNK = 1024 * 1024


@dataclass
class SyncStats:
    files_pulled: int = 0
    bytes_pulled: int = 0
    files_skipped: int = 0
    files_copied: int = 0  # taken from another tree of this worker instead of storage (`pull(seeds=...)`)
    bytes_copied: int = 0
    files_pushed: int = 0
    bytes_pushed: int = 0
    files_deleted: int = 0
    files_hashed: int = 0
    committed_generation: int | None = None
    known_clean: bool = False  # a job's pull trusted the cache's "known clean" record instead of scanning the tree
    warnings: list[str] = field(default_factory=list)


def _noop(*_args) -> None:
    pass


def count(n: int, noun: str) -> str:
    """'1 file', '2 files', '1,000 bytes'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


# A stat taken this soon after a file's last change cannot vouch for its content forever: a write in
# the same clock tick (4 ms here; a whole second on some filesystems) keeps size and times. So a sync
# returns only once such ticks are over (a later write gets a new ctime), and what it hashed in that
# window is hashed again; on whole-second filesystems those entries are dropped instead ("racy git").
RACY_NS = 20_000_000
COARSE_RACY_NS = 2_000_000_000


def _racy(ctime_ns: int, seen_ns: int) -> bool:
    """Whether a stat taken at `seen_ns` could miss a later change (whole-second times: a coarse filesystem)."""
    window = COARSE_RACY_NS if ctime_ns % 1_000_000_000 == 0 else RACY_NS
    return seen_ns - ctime_ns <= window


def _settle(tree: str, racy: list[tuple[str, tuple]], hashes: dict[str, tuple], rehash: bool) -> int:
    """Make racy hash cache entries trustworthy: wait out the clock tick of their ctime, then (`rehash`)
    hash them again under a fresh stat, for a writer that changed them in that tick. Entries with
    whole-second times are dropped (waiting would take seconds): the next scan hashes those files.
    A pull passes rehash=False for the files it wrote itself. Returns how many files were hashed."""
    fine = []
    for path, key in racy:
        if key[4] % 1_000_000_000 == 0:
            hashes.pop(path, None)
        else:
            fine.append(path)
    if not fine:
        return 0
    wait = max(hashes[p][4] for p in fine) + RACY_NS + 1 - time.time_ns()
    if wait > 0:
        time.sleep(wait / 1e9)
    if not rehash:
        return 0
    for path in fine:
        full = os.path.join(tree, path)
        seen = time.time_ns()
        try:
            st = os.lstat(full)
            digest = hash_file(full) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            digest = None
        if digest is None or _racy(st.st_ctime_ns, seen):
            hashes.pop(path, None)
        else:
            hashes[path] = (*stat_key(st), digest)
    return len(fine)


_BY_NAME = operator.attrgetter("name")
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


BIG_FILE = 1024 * 1024  # hashed on a thread of its own


def _hash_here(tree: str, to_hash: list[tuple], threads: int, stage: Callable | None = None) -> list[tuple]:
    """(hash, the stat key and mode once read, temp file staged by `stage` or None) of each file, in order. `stage`:
    a push to a local store (see _Walk.hash_files). Big files go to threads (hashlib lets go of the GIL while it
    hashes a big buffer) and are never staged; small ones are hashed here, as their time is Python and syscalls
    under the GIL, for which threads only queue (10,000 files of 20 KB: 0.45 s on this thread, 0.7 s on four)."""
    def hashed(item: tuple) -> tuple:
        digest, read = hash_and_stat(f"{tree}/{item[0]}")
        return digest, (*stat_key(read), read.st_mode), None

    def small(item: tuple) -> tuple:
        if stage is None:
            return hashed(item)
        digest, read, tmp = stage(f"{tree}/{item[0]}", item)
        return digest, (*stat_key(read), read.st_mode), tmp

    large = {i for i, item in enumerate(to_hash) if item[1].st_size >= BIG_FILE}
    workers = max(1, min(threads, 4, len(large)))
    if workers == 1:
        return [hashed(item) if i in large else small(item) for i, item in enumerate(to_hash)]
    with ThreadPoolExecutor(workers) as pool:
        futures = {i: pool.submit(hashed, to_hash[i]) for i in sorted(large)}
        try:
            hashed = [None if i in large else small(item) for i, item in enumerate(to_hash)]
            for i, future in futures.items():
                hashed[i] = future.result()
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
    return hashed


def _hash_all(tree: str, to_hash: list[tuple], threads: int, stage: Callable | None = None) -> list[tuple]:
    """_hash_here; SHARE_AFTER files or more are shared with a forked process (forked.share)."""
    if len(to_hash) < SHARE_AFTER:
        return _hash_here(tree, to_hash, threads, stage)
    return forked.share(to_hash, lambda run: _hash_here(tree, run, threads, stage))


OS_PATH_BYTES = 4095  # the longest path the system takes (PATH_MAX less its terminating NUL)
_TOO_LONG_HERE = (f"with this worker's cache folder its path passes the system's limit of {OS_PATH_BYTES:,} bytes, "
                  "so the cache cannot hold it")

def _room_in(folder: str | Path) -> int:
    """Bytes left for what a path holds below `folder` before the whole path passes the system's limit."""
    return OS_PATH_BYTES - 1 - len(os.fsencode(folder))


# This many files to hash (or, below, to fetch or upload) are shared with a forked process: what one process does
# per file is Python under the GIL, which threads cannot share. A walk alone is not shared: with the hash cache it
# is about 5 us a file, and a fork of a worker that holds a big manifest costs more than half of that (its page
# tables, and a copy of every page either process then writes, a reference count being a write).
SHARE_AFTER = 2_000


class _Walk:
    """One walk over folders of a tree: the entries found, the hash cache records still good, the files to hash,
    and what a volume cannot hold. `hashes` and `known` (the base's entries) are only read. What is still the
    base's or the hash cache's is counted, not copied (see `manifest` and `records_now`): at a job's end on
    100,000 unchanged files that is two 5 MB dicts less."""

    def __init__(self, hashes: Mapping[str, tuple], known: Mapping[str, Entry], kept: int, max_file_size: int | None,
                 stager=None):
        self.hashes, self.known, self.kept, self.max_file_size = hashes, known, kept, max_file_size
        self.stager = stager  # Remote.stager: files at new paths are copied into the local store as they are hashed
        self.entries: dict[str, Entry] = {}  # entries that are not the base's own
        self.same: list[str] = []  # paths whose base entry stands
        self.records: dict[str, tuple] = {}  # the hash cache's new records (of the files hashed)
        self.reused = 0  # records of `hashes` still good
        self.hashed_paths: set[str] = set()
        self.to_hash: list[tuple[str, os.stat_result, int]] = []
        self.warnings: list[str] = []
        self.skipped: list[str] = []
        self.hashed = 0

    def folders(self, pending: list[tuple[str, str]]) -> None:
        """Walk the pending folders and every folder found in them."""
        entries, same, to_hash, known, hashes = self.entries, self.same, self.to_hash, self.known, self.hashes
        reused = 0
        S_IFREG, S_IFDIR, S_IFLNK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
        S_IFMT = 0o170000  # stat.S_IFMT and S_IMODE as masks: two function calls less a file
        stripped = 0o7777 & ~self.kept  # the mode bits a push takes off (kept is within 0o7777)
        kept, max_file_size = self.kept, self.max_file_size
        while pending:
            directory, rel = pending.pop()
            # Bytes a name may have here: a volume's limits, and the system's on the whole path in the cache.
            room = _room_in(directory)
            limit = min(MAX_NAME_BYTES, MAX_PATH_BYTES - len(os.fsencode(rel)), room)
            if rel.count("/") >= MAX_DEPTH:
                limit = -1
            seen = time.time_ns()  # before any stat of this folder: a change after it gets a later ctime
            with _listable(directory):
                # Each file is stat'ed by its name in the open folder: a path from / is looked up again every time.
                fd = os.open(directory, _FOLDER)
                try:
                    with os.scandir(fd) as it:
                        items = sorted(it, key=_BY_NAME)
                except BaseException:
                    os.close(fd)
                    raise
            try:
                for item in items:
                    name = item.name
                    path = rel + name
                    # The common name (printable ASCII, no backslash, as short as `limit`) needs no other check;
                    # anything else gets the full rules every reader applies.
                    if not (len(name) <= limit and name.isascii() and name.isprintable() and "\\" not in name):
                        problem = path_problem(path) or (_TOO_LONG_HERE if len(os.fsencode(name)) > room else None)
                        if problem:
                            shown = path.encode("utf-8", "surrogateescape") if _undecodable(path) else path
                            self.warnings.append(f"skipped {shown!r}: {problem}; a volume cannot hold it, so it was "
                                                 "not committed")
                            self.skipped.append(path)
                            continue
                    st = item.stat(follow_symlinks=False)
                    mode = st.st_mode
                    kind = mode & S_IFMT
                    if mode & stripped and kind != S_IFLNK:
                        os.chmod(name, mode & kept, dir_fd=fd)  # its ctime moves: the next scan hashes it again
                    if kind == S_IFREG:
                        size = st.st_size
                        if max_file_size is not None and size > max_file_size:
                            raise commits.file_over_limit(max_file_size, path)
                        cached = hashes.get(path)
                        mtime = st.st_mtime_ns
                        if (cached is not None and cached[4] == st.st_ctime_ns and cached[3] == mtime
                                and cached[2] == size and cached[1] == st.st_ino and cached[0] == st.st_dev):
                            digest, perm, old = cached[5], mode & kept, known.get(path)
                            if (old is not None and old.hash == digest and old.mtime_ns == mtime and old.size == size
                                    and old.mode == perm and old.type == FILE and not old.target):
                                same.append(old.path)  # the base's own string: 100,000 paths are 7 MB
                            else:
                                entries[path] = Entry(path, FILE, size, digest, perm, mtime)
                            reused += 1
                        else:
                            to_hash.append((path, st, seen))
                    elif kind == S_IFDIR:
                        entry, old = Entry(path, DIR, mode=mode & kept), known.get(path)
                        if old is not None and old[:7] == entry[:7]:
                            same.append(old.path)
                        else:
                            entries[path] = entry
                        pending.append((f"{directory}/{name}", path + "/"))
                    elif kind == S_IFLNK:
                        target = os.readlink(name, dir_fd=fd)
                        if _undecodable(target):
                            self.warnings.append(f"skipped {path!r}: its link target is not valid UTF-8 text; a volume "
                                                 "cannot hold it")
                            self.skipped.append(path)
                            continue
                        entry, old = Entry(path, LINK, target=target, mode=0, mtime_ns=st.st_mtime_ns), known.get(path)
                        if old is not None and old[:7] == entry[:7]:
                            same.append(old.path)
                        else:
                            entries[path] = entry
                    else:
                        self.warnings.append(f"skipped {path!r}: FIFOs, sockets and device files are not stored in "
                                             "volumes")
                        self.skipped.append(path)
            finally:
                os.close(fd)
        self.reused += reused

    def hash_files(self, root: str, threads: int) -> None:
        """Hash what the walk could not vouch for, then settle what was hashed in the clock tick of its change."""
        if not self.to_hash:
            return
        stage = None
        if self.stager is not None:
            stager, known = self.stager, self.known

            def stage(full: str, item: tuple) -> tuple[str, os.stat_result, str | None]:
                # Only at a new path is the content most likely new: a touched or rewritten file would cost a copy
                # of its bytes, then removed, where its blob is stored already.
                if item[0] in known:
                    return (*hash_and_stat(full), None)
                return stager.stage(full, stat_key(item[1]))

        racy = []
        for (path, _, seen), (digest, read, tmp) in zip(self.to_hash, _hash_all(root, self.to_hash, threads, stage)):
            if tmp is not None:
                self.stager.keep(digest, tmp)  # a forked process's copies too
            # The file as it was read, not as the walk saw it: a write since (a job's leftover process) moved its
            # size and ctime. A change in the clock tick of the stat, or during the read, is hashed again (_settle).
            key = read[:5]
            self.hashed_paths.add(path)
            self.records[path] = (*key, digest)
            self.entries[path] = Entry(path, FILE, key[2], digest, read[5] & self.kept, key[3])
            if _racy(key[4], seen):
                racy.append((path, key))
        _settle(root, racy, self.records, rehash=True)
        self.hashed += len(self.to_hash)
        self.to_hash = []

    def manifest(self) -> Manifest:
        """What the walk found: the base's entries themselves (read-only) when every one of them stands and
        nothing else was found, else a new dict of them and the new entries."""
        known = self.known
        if known and not self.entries and len(self.same) == len(known):
            return Manifest(known if type(known) is MappingProxyType else MappingProxyType(known))
        entries = {path: known[path] for path in self.same}
        entries.update(self.entries)
        return Manifest(entries)

    def records_now(self, entries: Mapping[str, Entry]) -> Mapping[str, tuple]:
        """The hash cache after this walk found `entries`: `hashes` itself when every record of it is still good
        and none is new, else its good records and the new ones."""
        if not self.records and self.reused == len(self.hashes):
            return self.hashes
        old, hashed = self.hashes, self.hashed_paths
        records = {path: old[path] for path, entry in entries.items() if entry.type == FILE and path not in hashed}
        records.update(self.records)
        return records


def scan(
    tree: Path, hashes: Mapping[str, tuple], warn: Log = _noop, max_file_size: int | None = None,
    threads: int | None = None, skipped: list[str] | None = None, strip: bool = False, base: Manifest | None = None,
    stager=None,
) -> tuple[Manifest, Mapping[str, tuple], int]:
    """Describe the tree as a manifest (entries without generations); hashes only files whose
    stat changed since `hashes` was recorded. Returns (manifest, new hash cache, files hashed); the new hash cache
    is `hashes` itself when all of it is still good (copy it to change it).
    What a volume cannot hold is left out with a warning, and its path appended to `skipped`.
    `strip` (a push): setuid, setgid and sticky bits go from the tree too, not only from the manifest, so
    the tree is exactly what is committed and no such file stays in the worker's cache.
    `base` (the generation the tree was pulled as): an unchanged file, folder or link gets the base's own
    entry (its `gen` kept) instead of a new one, which is cheaper and lets a diff see it unchanged at once.
    `stager` (a push to a local store, Remote.stager): files at paths new to `base` are copied into the store as
    they are hashed."""
    known = base.entries if base is not None else {}
    walk = _Walk(hashes, known, PERMISSIONS if strip else 0o7777, max_file_size, stager)
    root = os.fspath(tree)
    walk.folders([(root, "")])  # iterative: any depth, no recursion limit
    walk.hash_files(root, threads or conf.get("TRANSFER_THREADS"))
    for warning in walk.warnings:
        warn(warning)
    if skipped is not None:
        skipped += walk.skipped
    manifest = walk.manifest()
    return manifest, walk.records_now(manifest.entries), walk.hashed


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


@contextmanager
def _listable(directory: str) -> Iterator[None]:
    """Lets the worker list a folder of its own cache that lacks owner r/x (a job may chmod 0), then puts
    the mode back. Root needs nothing."""
    try:
        mode = os.lstat(directory).st_mode
    except OSError:
        yield
        return
    if os.geteuid() == 0 or mode & 0o500 == 0o500:
        yield
        return
    os.chmod(directory, stat.S_IMODE(mode) | 0o700)
    try:
        yield
    finally:
        os.chmod(directory, stat.S_IMODE(mode))


def _remove(tree: Path, path: str) -> None:
    remove_tree(tree / path)


@contextmanager
def _in_child(remote: Remote, batch=None) -> Iterator[None]:
    """How the forked process of a shared pull or push runs: it sends no retry notice (it would go to the job's log
    from there), and it flushes and names the blob files it wrote into a local store's batch itself, while the
    parent still copies, or removes them if it fails (the parent's, listed before the fork, are not its own)."""
    remote.notify = None
    if batch is not None:
        batch.forked()
    try:
        yield
        if batch is not None:
            batch.finish()
    except BaseException:
        if batch is not None:
            batch.discard()
        raise


def _transfer(fn, items, threads: int):
    """fn over items on the transfer threads, results in order; the first failure cancels the queued rest."""
    if threads <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(threads)
    try:
        yield from pool.map(fn, items)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def _safe_target(tree: Path | str, path: str, verified: set[str] | None = None) -> str:
    """The cache path of a manifest path, after checking no parent is a link (never write through one).
    `verified` remembers folders (relative paths) already checked during one pull."""
    root = os.fspath(tree)
    parent = path.rpartition("/")[0]
    while parent and (verified is None or parent not in verified):
        full_parent = f"{root}/{parent}"
        if os.path.islink(full_parent) or not os.path.isdir(full_parent):
            raise IntegrityError(f"refusing to write {path!r}: a parent is not a real folder in the cache")
        if verified is not None:
            verified.add(parent)
        parent = parent.rpartition("/")[0]
    return f"{root}/{path}"


@no_cyclic_gc()
def pull(
    remote: Remote, lease: Lease, cached: CachedVolume, log: Log = _noop, progress: Progress = _noop,
    verify: bool = True, for_job: bool = False, seeds: Sequence[CachedVolume] = (),
) -> tuple[Manifest, SyncStats]:
    """Make the cache tree exactly the generation the lease names. Returns that manifest.
    `for_job`: the tree is handed to a job next. Such a pull trusts the cache's "known clean" record of
    this generation instead of walking the tree, and records neither it nor the disk usage (the job may
    change the tree); any other pull records both. Every pull takes the record away first.
    `seeds`: other trees of this worker, held by the caller, whose files vouched for by their hash caches
    (same stat, same hash) are copied instead of downloaded (copy_file_range: a reflink where the
    filesystem can, never a hard link)."""
    stats = SyncStats()
    started = time.monotonic()
    cached.prepare()
    cached.forget_usage()
    clean = cached.take_clean(lease.manifest_key)
    remote.prepare(lease)
    target = cached.synced_manifest(lease.manifest_key) if lease.manifest_key else Manifest()
    already_saved = target is not None
    if for_job and clean and already_saved:
        stats.known_clean = True
        stats.files_skipped = sum(1 for _ in target.files)
        history.record("pull", lease, "ok", generation=lease.generation, files=0)
        metrics.CACHE_HITS.inc()
        metrics.observe_sync("pull", stats, time.monotonic() - started)
        return target, stats
    if target is None:  # another generation: the parts it shares with the one synced here are not fetched
        target = remote.read_manifest(lease, like=cached.last_synced())
    _check_fits(cached, target, lease.volume_name)
    extras: list[str] = []
    known = cached.load_hashes(like=target)
    local, hashes, stats.files_hashed = scan(cached.tree, known, warn=stats.warnings.append, skipped=extras,
                                             base=target)
    dirty = bool(stats.files_hashed) or len(hashes) != len(known)  # the hash cache needs saving
    if hashes is known:
        hashes = dict(known)  # changed below; the cache's own is read-only
    tree = cached.tree
    root = os.fspath(tree)
    # 0. What no generation can hold (FIFOs, sockets, undecodable or hostile names, too deep) goes first:
    # the tree must end up exactly the generation, and a FIFO must not stand where a folder comes.
    for path in extras:
        _remove(tree, path)
        hashes.pop(path, None)
        dirty = True

    # 1. Remove what the generation does not have (or has as another type), deepest first.
    stale = [p for p, e in local.entries.items() if p not in target.entries or target.entries[p].type != e.type]
    for path in sorted(stale, key=lambda p: p.count("/"), reverse=True):
        _remove(tree, path)
        hashes.pop(path, None)
        dirty = True
        if local.entries[path].type != DIR:
            stats.files_deleted += 1
    stale_set = set(stale)
    remaining = {p: e for p, e in local.entries.items() if p not in stale_set}
    # 2. Folders, shallowest first.
    for entry in sorted((e for e in target.entries.values() if e.type == DIR), key=lambda e: e.path.count("/")):
        have = remaining.get(entry.path)
        if have is not None and have.mode == (entry.mode & PERMISSIONS) | 0o700:
            continue
        full = _safe_target(tree, entry.path)
        if have is None:
            os.mkdir(full)
        os.chmod(full, (entry.mode & PERMISSIONS) | 0o700)  # writable while the pull fills it
    # 3. Files: skip those already present with the same size and hash; fetch the rest.
    wanted: list[Entry] = []
    for entry in target.files:
        have = remaining.get(entry.path)
        if have is not None and have.size == entry.size and have.hash == entry.hash:
            stats.files_skipped += 1
            if have.mode != entry.mode & PERMISSIONS:
                os.chmod(f"{root}/{entry.path}", entry.mode & PERMISSIONS)
                hashes.pop(entry.path, None)
                dirty = True
            if have.mtime_ns != entry.mtime_ns:  # touched by a failed job, or a pull stopped before setting it
                os.utime(f"{root}/{entry.path}", ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
                hashes.pop(entry.path, None)
                dirty = True
        else:
            wanted.append(entry)
    total = sum(e.size for e in wanted)
    copies = _seeds(seeds, wanted)
    if wanted:
        remote.will_download(lease, {e.hash for e in wanted})
    if wanted:
        copied = sum(e.hash in copies for e in wanted)
        log(f"pulling {count(len(wanted), 'file')} ({count(total, 'byte')}) of {lease.volume_name}; "
            f"{stats.files_skipped:,} unchanged" + (f", {copied:,} of them copied from this worker's cache"
                                                    if copied else ""))
    done = 0
    staging = os.fspath(cached.staging)
    names = itertools.count()

    blobs = remote.blob_folder(lease) if verify else None

    def fetch(entry: Entry) -> tuple[Entry, tuple, int, bool]:
        if blobs is not None and entry.path not in remaining and entry.hash not in copies:
            full = _safe_target(root, entry.path, verified)
            key = _copy_new(f"{blobs}/{entry.hash}", full, entry)
            if key is not None:
                crash_point("pull.after_file")
                return entry, key, time.time_ns(), False
        tmp = f"{staging}/{os.getpid()}-{next(names)}"  # a forked share (below) names its own
        copied = entry.hash in copies and _copy_seed(*copies[entry.hash], tmp)
        if copied:
            pass
        elif verify:
            # Hashed as the bytes are written: the blob is read once.
            if remote.download_blob_hashed(lease, entry.hash, tmp) != entry.hash:
                os.unlink(tmp)
                raise IntegrityError(
                    f"file {entry.path!r} of volume {lease.volume_name!r} does not match its hash in storage "
                    "(a transfer was cut short, or the stored copy is damaged); retry the job, and if it fails "
                    "again restore an earlier generation from the volume's History"
                )
        else:
            remote.download_blob(lease, entry.hash, tmp)
        os.chmod(tmp, entry.mode & PERMISSIONS)
        os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
        full = _safe_target(root, entry.path, verified)
        os.replace(tmp, full)  # rename replaces a link itself, never its target
        crash_point("pull.after_file")
        seen = time.time_ns()
        return entry, stat_key(os.lstat(full)), seen, copied

    verified: set[str] = set()  # folders seen to be real; the pull owns the tree until it returns
    racy: list[tuple[str, tuple]] = []

    def landed(entry: Entry, key: tuple, seen: int, copied: bool) -> None:
        nonlocal done
        done += entry.size
        if copied:
            stats.files_copied += 1
            stats.bytes_copied += entry.size
        else:
            stats.files_pulled += 1
            stats.bytes_pulled += entry.size
        hashes[entry.path] = (*key, entry.hash)
        if _racy(key[4], seen):
            racy.append((entry.path, key))
        progress(done, total)

    # Files of one content (empty files, copies of a file) are downloaded once from a store over the network: the
    # others are copied from the first once it has landed (a local store's blob is as near as that first file).
    first_of: dict[str, str] = {}  # hash -> the path it is downloaded to
    fetched, again = [], []
    for entry in wanted:
        if blobs is None and entry.hash in first_of and entry.hash not in copies:
            again.append(entry)
        else:
            first_of.setdefault(entry.hash, entry.path)
            fetched.append(entry)
    threads = remote.pull_threads(lease)
    shareable = not copies and len(fetched) >= SHARE_AFTER and (
        (threads == 1 and blobs is not None) or remote.transfers_in_fork(lease))
    if shareable:
        # A file is Python and small syscalls (a local copy; a request and its answer, 1 ms of CPU on GCS), which
        # threads only queue for under the GIL: a forked process takes runs of files, on threads of its own.
        forked.share(fetched, lambda run: [result[1:] for result in _transfer(fetch, run, threads)],
                     lambda entry, result: landed(entry, *result), size=64 * threads, in_child=lambda: _in_child(remote))
    else:
        for result in _transfer(fetch, fetched, threads):
            landed(*result)
    for entry in again:
        source = first_of[entry.hash]
        copies[entry.hash] = (f"{root}/{source}", hashes[source][:5])  # as it landed: copied while it is that file
        landed(*fetch(entry))
    dirty = dirty or bool(wanted)
    # 4. Links, recreated from their target text, with their stored time (else every scan after sees them new).
    for entry in target.entries.values():
        if entry.type != LINK:
            continue
        have = remaining.get(entry.path)
        if have is not None and have.target == entry.target and have.mtime_ns == entry.mtime_ns:
            continue
        full = _safe_target(tree, entry.path)
        if have is not None and have.target != entry.target:
            os.unlink(full)
            have = None
        if have is None:
            os.symlink(entry.target, full)
        os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
    # 5. Folder modes exactly as stored (one without owner rwx too), deepest first, now that nothing
    # more is written into them: an unchanged tree then scans as the same generation.
    for entry in sorted((e for e in target.entries.values() if e.type == DIR), key=lambda e: -e.path.count("/")):
        if entry.mode & 0o700 != 0o700:
            os.chmod(f"{root}/{entry.path}", entry.mode & PERMISSIONS)
    # Files written in the last clock tick could still change unseen under the same stat: settle them.
    _settle(root, racy, hashes, rehash=False)
    if dirty:
        cached.save_hashes(hashes, like=target)
    if lease.manifest_key and not already_saved:
        cached.save_synced(lease.manifest_key, target)
    if not for_job:
        cached.record_usage(target)
        if lease.manifest_key:
            cached.mark_clean(lease.manifest_key)
    history.record("pull", lease, "ok", generation=lease.generation, files=stats.files_pulled)
    (metrics.CACHE_MISSES if stats.files_pulled or stats.files_deleted else metrics.CACHE_HITS).inc()
    metrics.observe_sync("pull", stats, time.monotonic() - started)
    return target, stats


def _copy_new(blob: str, full: str, entry: Entry) -> tuple | None:
    """Copy a blob file of a local store to `full`, a path nothing holds, as the entry (hashed as it is copied,
    mode and time set through the open file): the new file's stat key. No temp name, rename or lookup by path
    after the opens: the cost of a small file here is mostly syscalls. None, leaving nothing at `full`, when
    the blob cannot be read or does not match its entry, or `full` exists: the store's own path then does it
    (and says what is wrong, with retries)."""
    try:
        src = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    dst = None
    try:
        dst = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        digest, left = hashlib.sha256(), entry.size
        while left > 0:  # the entry's size: a blob's first `size` bytes with the entry's hash are the file
            chunk = os.read(src, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
        if left or digest.hexdigest() != entry.hash:
            raise ValueError("not the entry's bytes")
        os.fchmod(dst, entry.mode & PERMISSIONS)
        os.utime(dst, ns=(entry.mtime_ns, entry.mtime_ns))
        key = stat_key(os.fstat(dst))
        fd, dst = dst, None
        os.close(fd)
        return key
    except FileExistsError:
        return None
    except BaseException as exc:
        if dst is not None:
            os.close(dst)
            os.unlink(full)
        if isinstance(exc, (OSError, ValueError)):
            return None
        raise
    finally:
        os.close(src)


def _check_fits(cached: CachedVolume, target: Manifest, volume_name: str) -> None:
    """Refuse, before anything is written, a generation with a path this cache cannot hold (the system's limit
    on a whole path counts the cache folder too; a shorter one, or an upload, may have committed it)."""
    room = _room_in(cached.tree)
    if max(map(len, target.entries), default=0) * 4 <= room:  # a character is at most 4 bytes of UTF-8
        return
    for path in target.entries:
        size = len(path.encode("utf-8", "surrogatepass"))
        if size > room:
            raise IntegrityError(
                f"volume {volume_name!r} holds {path[:60]!r}..., a path of {size:,} bytes, and this worker's cache "
                f"folder {os.fspath(cached.tree)!r} leaves room for {room:,} (the system's limit on a whole path is "
                f"{OS_PATH_BYTES:,} bytes); give the worker a shorter "
                "VOLUMES_CACHE_DIR, or move that file to a shorter path in the dashboard"
            )


def _seeds(seeds: Sequence[CachedVolume], wanted: list[Entry]) -> dict[str, tuple[str, tuple]]:
    """hash -> (path in a seed's tree, its hash cache stat key) for the wanted files the seeds have."""
    if not seeds or not wanted:
        return {}
    by_hash: dict[str, tuple[str, tuple]] = {}
    for seed in reversed(seeds):  # the first seed wins
        root = os.fspath(seed.tree)
        by_hash.update((record[5], (f"{root}/{path}", record[:5]))
                       for path, record in seed.load_hashes().items() if len(record) > 5)
    return {e.hash: by_hash[e.hash] for e in wanted if e.hash in by_hash}


def _copy_seed(source: str, key: tuple, tmp: str) -> bool:
    """Copy `source` to `tmp` if it is still the very file its hash cache entry (`key`) vouches for."""
    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        copied = copy_if_unchanged(source, key, dst)
    finally:
        os.close(dst)
    if not copied:
        os.unlink(tmp)  # not that file (any more): download it instead
    return copied


@dataclass
class PreparedCommit:
    """One volume's change with every blob uploaded, waiting to be committed with the job's others."""

    lease: Lease
    cached: CachedVolume
    base: Manifest
    manifest: Manifest
    counts: ChangeCounts
    stats: SyncStats
    job_id: int | None = None
    message: str = ""
    log: Log = _noop


@no_cyclic_gc()
def push_prepare(
    remote: Remote, lease: Lease, cached: CachedVolume, base: Manifest, job_id: int | None = None,
    message: str = "", log: Log = _noop, progress: Progress = _noop, max_volume_size: int | None = None,
) -> tuple[PreparedCommit | None, SyncStats]:
    """Scan the cache tree, check the limits and upload the missing blobs; nothing is committed.
    Returns (None, stats) when nothing changed since `base`."""
    stats = SyncStats()
    started = time.monotonic()
    remote.prepare(lease)
    known = cached.load_hashes(like=base)
    with remote.upload_batch(lease) as batch:  # every blob is stored when it exits
        current, hashes, stats.files_hashed = scan(
            cached.tree, known, warn=stats.warnings.append, max_file_size=conf.max_file_size(), strip=True, base=base,
            stager=remote.stager(lease),
        )
        if stats.files_hashed or len(hashes) != len(known):
            cached.save_hashes(hashes, like=current)
        for warning in stats.warnings:
            log(f"warning: {warning}")
        counts = ChangeCounts.between(base, current)
        if not (counts.files_added or counts.files_changed or counts.files_deleted):
            history.record("push", lease, "unchanged", parent=lease.generation)
            if not stats.warnings:  # the tree is exactly `current` (nothing was skipped), and so `base`
                cached.record_usage(current)
                if lease.manifest_key and cached.is_synced(lease.manifest_key):
                    cached.mark_clean(lease.manifest_key)
            metrics.observe_sync("push", stats, time.monotonic() - started)
            return None, stats
        # The commit checks the limits again; refused here, nothing is stored (what the scan staged is removed).
        commits.check_size(lease.volume_name, base.size_bytes, current.size_bytes, max_volume_size)
        remote.check_room(lease, current, counts)

        by_hash = {e.hash: e for e in current.files}
        stored = base.hashes()
        missing = remote.missing_blobs(lease, set(by_hash) - stored, stored=len(stored))
        total = sum(by_hash[h].size for h in missing)
        if missing:
            log(f"pushing {count(len(missing), 'file')} ({count(total, 'byte')}) of {lease.volume_name}")
        done = 0

        root = os.fspath(cached.tree)

        def send(digest: str) -> Entry:
            entry = by_hash[digest]
            record = hashes.get(entry.path)  # the stat it was hashed under: a local store copies it without hashing
            remote.upload_blob(lease, digest, f"{root}/{entry.path}",
                               hashed_as=record[:5] if record and record[5] == digest else None)
            return entry

        def sent(entry: Entry) -> None:
            nonlocal done
            done += entry.size
            stats.files_pushed += 1
            stats.bytes_pushed += entry.size
            progress(done, total)

        uploads = []
        for digest in sorted(missing):
            if remote.adopt_blob(lease, digest):  # copied as the scan hashed it
                sent(by_hash[digest])
            else:
                uploads.append(digest)
        threads = remote.push_threads(lease)
        if len(uploads) >= SHARE_AFTER and ((batch is not None and threads == 1) or remote.transfers_in_fork(lease)):
            # A file is Python and small syscalls (a copy into a local store; a request and its answer), which
            # threads only queue for under the GIL: a forked process takes runs of files, on threads of its own.
            forked.share(uploads, lambda run: [True for _ in _transfer(send, run, threads)],
                         lambda digest, _: sent(by_hash[digest]), size=64 * threads,
                         in_child=lambda: _in_child(remote, batch))
        else:
            for entry in _transfer(send, uploads, threads):
                sent(entry)
    stats.files_deleted = counts.files_deleted
    metrics.observe_sync("push", stats, time.monotonic() - started)
    return PreparedCommit(lease, cached, base, current, counts, stats, job_id, message, log), stats


@no_cyclic_gc()
def commit_all(remote: Remote, prepared: list[PreparedCommit]) -> list[int]:
    """Move every volume's pointer in one database transaction: all of them or none.
    Returns the new generations, in the order given."""
    if not prepared:
        return []
    for item in prepared:  # as the commit stamps it (a server stamps its own copy): what the cache keeps
        commits.stamp(item.base, item.manifest, item.lease.generation + 1)
    results = remote.commit_many(prepared)
    for item, (generation, key) in zip(prepared, results):
        item.stats.committed_generation = generation
        item.cached.save_synced(key, item.manifest)
        if not item.stats.warnings:  # the tree is exactly the committed manifest (nothing was skipped)
            item.cached.record_usage(item.manifest)
            item.cached.mark_clean(key)
        history.record("push", item.lease, "ok", parent=item.lease.generation, generation=generation)
        crash_point("push.after_commit")
        c = item.counts
        item.log(
            f"committed generation {generation} of {item.lease.volume_name}: "
            f"+{c.files_added} ~{c.files_changed} -{c.files_deleted}"
        )
    return [generation for generation, _ in results]


def push(
    remote: Remote, lease: Lease, cached: CachedVolume, base: Manifest, job_id: int | None = None,
    message: str = "", log: Log = _noop, progress: Progress = _noop, max_volume_size: int | None = None,
) -> SyncStats:
    """Commit the cache tree as the next generation after `base`, if anything changed."""
    prepared, stats = push_prepare(remote, lease, cached, base, job_id=job_id, message=message, log=log,
                                   progress=progress, max_volume_size=max_volume_size)
    if prepared is not None:
        commit_all(remote, [prepared])
    return stats
