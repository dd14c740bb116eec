"""Pull (remote -> cache) and push (cache -> remote) by diffing manifests.

A pull makes the cache tree exactly the leased generation, transferring only files
whose size and hash differ; a push uploads missing blobs, then commits a new
manifest under the fencing check. Neither ever follows a symlink: links are
entries with their target text, and every write lands beneath the cache root.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import conf
from ..exceptions import IntegrityError, LimitExceeded
from . import history
from .cache import CachedVolume
from .commits import ChangeCounts
from .faults import crash_point
from .leases import Lease
from .manifest import DIR, FILE, LINK, Entry, Manifest
from .remote import Remote

Log = Callable[[str], None]
Progress = Callable[[int, int], None]  # (bytes done, bytes total)
CHUNK = 1024 * 1024


@dataclass
class SyncStats:
    files_pulled: int = 0
    bytes_pulled: int = 0
    files_skipped: int = 0
    files_pushed: int = 0
    bytes_pushed: int = 0
    files_deleted: int = 0
    files_hashed: int = 0
    committed_generation: int | None = None
    warnings: list[str] = field(default_factory=list)


def _noop(*_args) -> None:
    pass


def count(n: int, noun: str) -> str:
    """'1 file', '2 files', '1,000 bytes'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def scan(
    tree: Path, hashes: dict[str, list], warn: Log = _noop, max_file_size: int | None = None,
    threads: int | None = None,
) -> tuple[Manifest, dict[str, list], int]:
    """Describe the tree as a manifest (entries without generations); hashes only files whose
    stat changed since `hashes` was recorded. Returns (manifest, new hash cache, files hashed)."""
    entries: dict[str, Entry] = {}
    to_hash: list[tuple[str, os.stat_result]] = []
    new_hashes: dict[str, list] = {}

    def walk(directory: str, rel: str) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            path = f"{rel}{item.name}"
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                warn(f"skipped {path.encode('utf-8', 'surrogateescape')!r}: file names must be valid UTF-8")
                continue
            st = item.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                entries[path] = Entry(path, LINK, target=os.readlink(item.path), mode=0, mtime_ns=st.st_mtime_ns)
            elif stat.S_ISDIR(mode):
                entries[path] = Entry(path, DIR, mode=stat.S_IMODE(mode))
                walk(item.path, path + "/")
            elif stat.S_ISREG(mode):
                if max_file_size is not None and st.st_size > max_file_size:
                    raise LimitExceeded(
                        f"file {path!r} is {st.st_size:,} bytes, over the limit of {max_file_size:,} bytes "
                        "per file; make it smaller or split it (the enterprise edition lifts this limit). "
                        "Nothing was committed.",
                        path=path,
                    )
                cached = hashes.get(path)
                key = _stat_key(st)
                if cached and cached[:5] == key:
                    new_hashes[path] = cached
                    entries[path] = Entry(path, FILE, st.st_size, cached[5], stat.S_IMODE(mode), st.st_mtime_ns)
                else:
                    to_hash.append((path, st))
            else:
                warn(f"skipped {path!r}: FIFOs, sockets and device files are not stored in volumes")

    walk(str(tree), "")
    if to_hash:
        with ThreadPoolExecutor(threads or conf.get("TRANSFER_THREADS")) as pool:
            digests = list(pool.map(lambda item: hash_file(tree / item[0]), to_hash))
        for (path, st), digest in zip(to_hash, digests):
            # Keyed by the stat taken before hashing: a file changed meanwhile gets a new key and is hashed again.
            new_hashes[path] = _stat_key(st) + [digest]
            entries[path] = Entry(path, FILE, st.st_size, digest, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return Manifest(entries), new_hashes, len(to_hash)


def _remove(tree: Path, path: str) -> None:
    full = tree / path
    if full.is_dir() and not full.is_symlink():
        shutil.rmtree(full)
    else:
        try:
            full.unlink()
        except FileNotFoundError:
            pass


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


def _safe_target(tree: Path, path: str, verified: set[Path] | None = None) -> Path:
    """The cache path of a manifest path, after checking no parent is a link (never write through one).
    `verified` remembers folders already checked during one pull."""
    full = tree / path
    parent = full.parent
    while parent != tree and (verified is None or parent not in verified):
        if parent.is_symlink() or not parent.is_dir():
            raise IntegrityError(f"refusing to write {path!r}: a parent is not a real folder in the cache")
        if verified is not None:
            verified.add(parent)
        parent = parent.parent
    return full


def pull(
    remote: Remote, lease: Lease, cached: CachedVolume, log: Log = _noop, progress: Progress = _noop,
    verify: bool = True,
) -> tuple[Manifest, SyncStats]:
    """Make the cache tree exactly the generation the lease names. Returns that manifest."""
    stats = SyncStats()
    cached.prepare()
    remote.prepare(lease)
    target = cached.synced_manifest(lease.manifest_key) if lease.manifest_key else Manifest()
    already_saved = target is not None
    if target is None:
        target = remote.read_manifest(lease)
    local, hashes, stats.files_hashed = scan(cached.tree, cached.load_hashes(), warn=stats.warnings.append)
    tree = cached.tree

    # 1. Remove what the generation does not have (or has as another type), deepest first.
    stale = [p for p, e in local.entries.items() if p not in target.entries or target.entries[p].type != e.type]
    for path in sorted(stale, key=lambda p: p.count("/"), reverse=True):
        _remove(tree, path)
        hashes.pop(path, None)
        if local.entries[path].type != DIR:
            stats.files_deleted += 1
    stale_set = set(stale)
    remaining = {p: e for p, e in local.entries.items() if p not in stale_set}
    # 2. Folders, shallowest first.
    for entry in sorted((e for e in target.entries.values() if e.type == DIR), key=lambda e: e.path.count("/")):
        full = _safe_target(tree, entry.path)
        if entry.path not in remaining:
            full.mkdir()
        os.chmod(full, entry.mode | 0o700)
    # 3. Files: skip those already present with the same size and hash; fetch the rest in parallel.
    wanted: list[Entry] = []
    for entry in target.files:
        have = remaining.get(entry.path)
        if have is not None and have.size == entry.size and have.hash == entry.hash:
            stats.files_skipped += 1
            if have.mode != entry.mode:
                os.chmod(tree / entry.path, entry.mode)
                hashes.pop(entry.path, None)
        else:
            wanted.append(entry)
    total = sum(e.size for e in wanted)
    if wanted:
        log(f"pulling {count(len(wanted), 'file')} ({count(total, 'byte')}) of {lease.volume_name}; "
            f"{stats.files_skipped:,} unchanged")
    done = 0

    def fetch(entry: Entry) -> tuple[Entry, os.stat_result]:
        tmp = cached.staging / uuid.uuid4().hex
        remote.download_blob(lease, entry.hash, str(tmp))
        if verify and hash_file(tmp) != entry.hash:
            tmp.unlink()
            raise IntegrityError(
                f"file {entry.path!r} of volume {lease.volume_name!r} does not match its hash in storage "
                "(a transfer was cut short, or the stored copy is damaged); retry the job, and if it fails "
                "again restore an earlier generation from the volume's History"
            )
        os.chmod(tmp, entry.mode)
        os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
        full = _safe_target(tree, entry.path, verified)
        os.replace(tmp, full)  # rename replaces a link itself, never its target
        crash_point("pull.after_file")
        return entry, os.lstat(full)

    verified: set[Path] = set()  # folders seen to be real; the pull owns the tree until it returns
    for entry, st in _transfer(fetch, wanted, remote.pull_threads(lease)):
        done += entry.size
        stats.files_pulled += 1
        stats.bytes_pulled += entry.size
        hashes[entry.path] = _stat_key(st) + [entry.hash]
        progress(done, total)
    # 4. Links, recreated from their target text.
    for entry in target.entries.values():
        if entry.type != LINK:
            continue
        have = remaining.get(entry.path)
        if have is not None and have.target == entry.target:
            continue
        full = _safe_target(tree, entry.path)
        if have is not None:
            full.unlink()
        os.symlink(entry.target, full)
    cached.save_hashes(hashes)
    if lease.manifest_key and not already_saved:
        cached.save_synced(lease.manifest_key, target)
    history.record("pull", lease, "ok", generation=lease.generation, files=stats.files_pulled)
    return target, stats


def push(
    remote: Remote, lease: Lease, cached: CachedVolume, base: Manifest, job_id: int | None = None,
    message: str = "", log: Log = _noop, progress: Progress = _noop, max_volume_size: int | None = None,
) -> SyncStats:
    """Commit the cache tree as the next generation after `base`, if anything changed."""
    stats = SyncStats()
    remote.prepare(lease)
    current, hashes, stats.files_hashed = scan(
        cached.tree, cached.load_hashes(), warn=stats.warnings.append, max_file_size=conf.max_file_size()
    )
    cached.save_hashes(hashes)
    for warning in stats.warnings:
        log(f"warning: {warning}")
    counts = ChangeCounts.between(base, current)
    if not (counts.files_added or counts.files_changed or counts.files_deleted):
        history.record("push", lease, "unchanged", parent=lease.generation)
        return stats
    if max_volume_size is not None and current.size_bytes > max_volume_size:
        raise LimitExceeded(
            f"volume {lease.volume_name!r} would be {current.size_bytes:,} bytes, over its limit of "
            f"{max_volume_size:,} bytes; delete files or ask an admin to raise the limit. Nothing was committed."
        )
    generation = lease.generation + 1
    for path, entry in current.entries.items():
        old = base.entries.get(path)
        gen = old.gen if old is not None and old.same_content(entry) else generation
        current.entries[path] = Entry(**{**entry.__dict__, "gen": gen})

    by_hash = {e.hash: e for e in current.files}
    missing = remote.missing_blobs(lease, set(by_hash) - base.hashes())
    total = sum(by_hash[h].size for h in missing)
    if missing:
        log(f"pushing {count(len(missing), 'file')} ({count(total, 'byte')}) of {lease.volume_name}")
    done = 0

    def send(digest: str) -> Entry:
        entry = by_hash[digest]
        remote.upload_blob(lease, digest, str(cached.tree / entry.path))
        return entry

    for entry in _transfer(send, sorted(missing), conf.get("TRANSFER_THREADS")):
        done += entry.size
        stats.files_pushed += 1
        stats.bytes_pushed += entry.size
        progress(done, total)
    stats.files_deleted = counts.files_deleted
    stats.committed_generation, key = remote.commit(
        lease, lease.generation, current, counts, job_id=job_id, message=message
    )
    cached.save_synced(key, current)
    history.record("push", lease, "ok", parent=lease.generation, generation=stats.committed_generation)
    crash_point("push.after_commit")
    log(
        f"committed generation {stats.committed_generation} of {lease.volume_name}: "
        f"+{counts.files_added} ~{counts.files_changed} -{counts.files_deleted}"
    )
    return stats
