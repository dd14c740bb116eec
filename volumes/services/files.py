"""File operations from the dashboard, the API and the CLI, each one committed as a generation.

Every change takes the volume's lease briefly (409 while a job holds it), edits the
current manifest, uploads at most one blob, and commits under the fencing check: the
same guarantees as a job's push.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from .. import conf
from ..engine import commits, leases, manifest_store
from ..engine.commits import Change, ChangeCounts
from ..engine.leases import Lease
from ..engine.manifest import DIR, FILE, LINK, Entry, Manifest
from ..engine.remote import DirectRemote
from ..exceptions import Conflict, InvalidPath, LeaseHeld, LimitExceeded, NotFound
from ..models import Volume, VolumeCommit
from ..storage.factory import store_for_storage, store_for_volume
from ..storage.keys import blob_key, safe_relpath

CHUNK = 1024 * 1024


class ManifestMemo:
    """Manifests read from storage, kept by key (they never change) up to MANIFEST_MEMORY_ENTRIES entries in
    all, least recently used out first. The one read last is kept whatever its size, so browsing a volume
    bigger than the bound does not read it again on every click. A bound by count held 64 manifests: with
    100,000 entries each, several GB in one web process."""

    def __init__(self):
        self._held: OrderedDict[tuple[int, str], Manifest] = OrderedDict()
        self._entries = 0
        self._lock = threading.Lock()

    def __call__(self, storage_id: int, key: str) -> Manifest:
        with self._lock:
            manifest = self._held.get((storage_id, key))
            if manifest is not None:
                self._held.move_to_end((storage_id, key))
                return manifest
        from ..models import ObjectStorage

        manifest = manifest_store.read(store_for_storage(ObjectStorage.objects.get(pk=storage_id)), key)
        with self._lock:
            if (storage_id, key) not in self._held:
                self._held[storage_id, key] = manifest
                self._entries += len(manifest.entries)
            bound = conf.get("MANIFEST_MEMORY_ENTRIES")
            while self._entries > bound and len(self._held) > 1:
                _, dropped = self._held.popitem(last=False)
                self._entries -= len(dropped.entries)
        return manifest

    def held_entries(self) -> int:
        return self._entries

    def cache_clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._entries = 0


_load_manifest = ManifestMemo()


def generation_missing(volume: Volume, generation: int) -> NotFound:
    """Why a generation has no history row: it never existed, or retention pruned it."""
    if generation < 1 or generation > volume.generation:
        have = f"generations 1 to {volume.generation}" if volume.generation else "no generations yet"
        return NotFound(f"volume {volume.name!r} has no generation {generation}: it has {have}",
                        generation=generation, why="never_existed")
    oldest = (VolumeCommit.objects.filter(volume=volume).order_by("generation")
              .values_list("generation", flat=True).first())
    kept = f"; the oldest kept is {oldest}" if oldest else ""
    return NotFound(f"generation {generation} of volume {volume.name!r} was pruned from the history (by the "
                    f"retention settings VOLUMES_HISTORY_KEEP_GENERATIONS / _DAYS, or `volume prune`){kept}",
                    generation=generation, why="pruned")


def manifest_key_of(volume: Volume, generation: int | None = None) -> str:
    """Where the manifest of the current (or a kept older) generation is stored ("" for generation 0)."""
    if generation is None or generation == volume.generation:
        return volume.manifest_key
    commit = VolumeCommit.objects.filter(volume=volume, generation=generation).first()
    if commit is None:
        raise generation_missing(volume, generation)
    return commit.manifest_key


def manifest_of(volume: Volume, generation: int | None = None) -> Manifest:
    """The manifest of the current (or a kept older) generation; manifests never change, so they are cached."""
    key = manifest_key_of(volume, generation)
    if not key:
        return Manifest()
    manifest = _load_manifest(volume.storage_id, key)
    return Manifest(dict(manifest.entries), manifest.generation, manifest.runs)


def entry_at(volume: Volume, path: str, generation: int | None = None) -> Entry:
    path = safe_relpath(path)
    entry = manifest_of(volume, generation).entries.get(path)
    if entry is None:
        raise NotFound(f"{path!r} does not exist in volume {volume.name!r}")
    return entry


def list_folder(volume: Volume, path: str = "") -> list[Entry]:
    """Entries directly inside a folder: folders first, then by name."""
    path = safe_relpath(path, allow_root=True)
    manifest = manifest_of(volume)
    if path and (path not in manifest.entries or manifest.entries[path].type != DIR):
        raise NotFound(f"folder {path!r} does not exist in volume {volume.name!r}")
    prefix = f"{path}/" if path else ""
    children = [e for p, e in manifest.entries.items() if p.startswith(prefix) and "/" not in p[len(prefix):]]
    return sorted(children, key=lambda e: (e.type != DIR, e.path.lower()))


def open_file(volume: Volume, entry: Entry, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Stream a file's bytes (optionally a range [start, end)); links are never followed."""
    if entry.type != FILE:
        raise InvalidPath(f"{entry.path!r} is a {entry.type}, not a file")
    store, prefix = store_for_volume(volume)
    return store.open_read(blob_key(prefix, entry.hash), start, end)


@contextmanager
def _leased(volume: Volume, user, read: bool = True) -> Iterator[tuple[Lease, DirectRemote, Manifest]]:
    """The volume's lease for one change, with its current manifest (an empty one when not `read`)."""
    lease = leases.try_acquire(volume.pk, f"{getattr(user, 'username', 'system')} (dashboard/API)")
    if lease is None:
        holder = leases.current_holder(volume.pk)
        who = holder.describe() if holder else "a job"
        raise LeaseHeld(
            f"volume {volume.name!r} is in use by {who}; try again when it has finished",
            holder=who,
        )
    remote = DirectRemote(user_id=getattr(user, "pk", None))
    try:
        yield lease, remote, remote.read_manifest(lease) if read else Manifest()
    finally:
        remote.release(lease)


def _commit(lease: Lease, remote: DirectRemote, base: Manifest, new: Manifest, message: str) -> int:
    return remote.commit_changes([Change(lease, lease.generation, base, new, message=message)])[0][0]


def _ensure_parents(manifest: Manifest, path: str) -> None:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        existing = manifest.entries.get(parent)
        if existing is None:
            manifest.entries[parent] = Entry(parent, DIR, mode=0o755)
        elif existing.type != DIR:
            raise Conflict(f"{parent!r} is a {existing.type}, not a folder")


def _spool(stream: BinaryIO, limit: int | None, path: str) -> tuple[str, str, int]:
    """Copy an upload to a temporary file, hashing as it goes and refusing it past the size limit."""
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise commits.file_over_limit(limit, path)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, digest.hexdigest(), size


def file_put(volume: Volume, path: str, stream: BinaryIO, user=None, replacing: str | None = None) -> int:
    """Create or replace one file; returns the new generation. `replacing`: the hash of the file the caller
    read (an editor); checked under the lease, so a change committed meanwhile is refused, not overwritten."""
    path = safe_relpath(path)
    tmp, digest, size = _spool(stream, conf.max_file_size(), path)
    try:
        with _leased(volume, user) as (lease, remote, base):
            new = Manifest(dict(base.entries))
            existing = new.entries.get(path)
            if replacing is not None:
                if existing is None or existing.type != FILE:
                    raise NotFound(f"{path!r} is no longer a file in volume {volume.name!r}")
                if existing.hash != replacing:
                    raise Conflict(f"{path!r} changed since you opened it (generation {existing.gen}); copy your "
                                   "text, reopen the file and apply your change again")
            if existing is not None and existing.type != FILE:
                raise Conflict(f"{path!r} is a {existing.type}; delete it first")
            _ensure_parents(new, path)
            new.entries[path] = Entry(path, FILE, size, digest, existing.mode if existing else 0o644,
                                      mtime_ns=_now_ns())
            remote.check_room(lease, new, ChangeCounts.between(base, new))  # the commit's limits, before uploading
            if remote.missing_blobs(lease, {digest}):
                remote.upload_blob(lease, digest, tmp)
            return _commit(lease, remote, base, new, f"upload {path}")
    finally:
        os.unlink(tmp)


def folder_create(volume: Volume, path: str, user=None) -> int:
    path = safe_relpath(path)
    with _leased(volume, user) as (lease, remote, base):
        if path in base.entries:
            raise Conflict(f"{path!r} already exists")
        new = Manifest(dict(base.entries))
        _ensure_parents(new, path)
        new.entries[path] = Entry(path, DIR, mode=0o755)
        return _commit(lease, remote, base, new, f"new folder {path}")


def _subtree(manifest: Manifest, path: str) -> list[str]:
    return [p for p in manifest.entries if p == path or p.startswith(path + "/")]


def file_delete(volume: Volume, path: str, user=None) -> int:
    """Delete a file, link or folder (with everything in it)."""
    path = safe_relpath(path)
    with _leased(volume, user) as (lease, remote, base):
        doomed = _subtree(base, path)
        if not doomed:
            raise NotFound(f"{path!r} does not exist in volume {volume.name!r}")
        new = Manifest({p: e for p, e in base.entries.items() if p not in set(doomed)})
        return _commit(lease, remote, base, new, f"delete {path}")


def file_move(volume: Volume, src: str, dst: str, user=None) -> int:
    """Rename or move a file, link or folder; the destination must not exist."""
    src, dst = safe_relpath(src), safe_relpath(dst)
    if dst == src or dst.startswith(src + "/"):
        raise InvalidPath(f"cannot move {src!r} into itself")
    with _leased(volume, user) as (lease, remote, base):
        moving = _subtree(base, src)
        if not moving:
            raise NotFound(f"{src!r} does not exist in volume {volume.name!r}")
        if dst in base.entries:
            raise Conflict(f"{dst!r} already exists; pick another name or delete it first")
        new = Manifest({p: e for p, e in base.entries.items() if p not in set(moving)})
        _ensure_parents(new, dst)
        for p in moving:
            target = dst + p[len(src):]
            new.entries[target] = base.entries[p]._replace(path=target)
        return _commit(lease, remote, base, new, f"move {src} to {dst}")


def generation_restore(volume: Volume, generation: int, user=None) -> int:
    """Commit an older generation's files as the newest generation (history is kept)."""
    old = manifest_of(volume, generation)
    with _leased(volume, user) as (lease, remote, base):
        missing = remote.missing_blobs(lease, old.hashes())
        if missing:
            raise NotFound(f"generation {generation} can no longer be restored: {len(missing)} files were collected")
        new = Manifest(dict(old.entries))
        return _commit(lease, remote, base, new, f"restore generation {generation}")


def _now_ns() -> int:
    import time

    return time.time_ns()


__all__ = [
    "manifest_of", "entry_at", "list_folder", "open_file", "file_put", "folder_create", "file_delete",
    "file_move", "generation_restore", "LINK",
]


def file_put_many(volume: Volume, items: list[tuple[str, BinaryIO]], user=None) -> int:
    """Create or replace several files as one generation (a dashboard upload); returns it.

    Each file is spooled and hashed before the lease is taken, so the lease is held only for
    the blob uploads and the commit."""
    limit = conf.max_file_size()
    spooled: list[tuple[str, str, str, int]] = []
    try:
        for path, stream in items:
            path = safe_relpath(path)
            tmp, digest, size = _spool(stream, limit, path)
            spooled.append((path, tmp, digest, size))
        with _leased(volume, user) as (lease, remote, base):
            new = Manifest(dict(base.entries))
            for path, _, digest, size in spooled:
                existing = new.entries.get(path)
                if existing is not None and existing.type != FILE:
                    raise Conflict(f"{path!r} is a {existing.type}; delete it first")
                _ensure_parents(new, path)
                new.entries[path] = Entry(path, FILE, size, digest, existing.mode if existing else 0o644,
                                          mtime_ns=_now_ns())
            remote.check_room(lease, new, ChangeCounts.between(base, new))  # the commit's limits, before uploading
            missing = remote.missing_blobs(lease, {digest for _, _, digest, _ in spooled})
            for _, tmp, digest, _ in spooled:
                if digest in missing:
                    remote.upload_blob(lease, digest, tmp)
                    missing.discard(digest)
            names = ", ".join(p for p, *_ in spooled[:3]) + (" ..." if len(spooled) > 3 else "")
            return _commit(lease, remote, base, new, f"upload {names}"[:300])
    finally:
        for _, tmp, _, _ in spooled:
            os.unlink(tmp)


MAX_TAR_MEMBERS = 100_000


def file_put_tar(volume: Volume, stream: BinaryIO, folder: str = "", user=None) -> tuple[int, int]:
    """Every regular file of a tar stream, under `folder`, as one generation (`volume put` of a
    folder over the API). Returns (generation, files). Each path is checked like any other (no '..',
    no absolute paths); links, devices and other special members are refused."""
    import tarfile

    from ..exceptions import InvalidPath

    folder = safe_relpath(folder) if folder else ""
    items: list[tuple[str, BinaryIO]] = []
    spooled: list[str] = []
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    if member.isdir():
                        continue
                    if not member.isreg():
                        raise InvalidPath(f"{member.name!r} in the upload is not a regular file; only files are taken")
                    if len(items) >= MAX_TAR_MEMBERS:
                        raise LimitExceeded(f"at most {MAX_TAR_MEMBERS:,} files per upload")
                    path = safe_relpath(f"{folder}/{member.name}" if folder else member.name)
                    # A tar stream is read once, in order: spool each member now.
                    tmp, _digest, _size = _spool(archive.extractfile(member), conf.max_file_size(), path)
                    spooled.append(tmp)
                    items.append((path, open(tmp, "rb")))
        except tarfile.TarError as exc:
            raise InvalidPath(f"the upload is not a valid tar stream ({exc})") from None
        if not items:
            raise InvalidPath("the upload holds no files")
        return file_put_many(volume, items, user=user), len(items)
    finally:
        for _, fh in items:
            fh.close()
        for tmp in spooled:
            os.unlink(tmp)
