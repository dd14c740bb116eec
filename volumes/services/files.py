"""File operations from the dashboard, the API and the CLI, each one committed as a generation.

Every change takes the volume's lease briefly (409 while a job holds it), edits the
current manifest, uploads at most one blob, and commits under the fencing check: the
same guarantees as a job's push.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from typing import BinaryIO, Iterator

from .. import conf
from ..engine import leases
from ..engine.commits import ChangeCounts
from ..engine.leases import Lease
from ..engine.manifest import DIR, FILE, LINK, Entry, Manifest
from ..engine.remote import DirectRemote
from ..exceptions import Conflict, InvalidPath, LeaseHeld, LimitExceeded, NotFound
from ..models import Volume, VolumeCommit
from ..storage.factory import store_for_storage
from ..storage.keys import blob_key, safe_relpath, volume_prefix

CHUNK = 1024 * 1024


@lru_cache(maxsize=64)
def _load_manifest(storage_id: int, key: str) -> Manifest:
    from ..models import ObjectStorage

    store = store_for_storage(ObjectStorage.objects.get(pk=storage_id))
    return Manifest.from_json(store.get_bytes(key))


def manifest_of(volume: Volume, generation: int | None = None) -> Manifest:
    """The manifest of the current (or a kept older) generation; manifests never change, so they are cached."""
    if generation is None or generation == volume.generation:
        key = volume.manifest_key
    else:
        commit = VolumeCommit.objects.filter(volume=volume, generation=generation).first()
        if commit is None:
            raise NotFound(f"generation {generation} of volume {volume.name!r} is not kept")
        key = commit.manifest_key
    if not key:
        return Manifest()
    manifest = _load_manifest(volume.storage_id, key)
    return Manifest(dict(manifest.entries), manifest.generation)


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
    store = store_for_storage(volume.storage)
    return store.open_read(blob_key(volume_prefix(volume.workspace_id, volume.name), entry.hash), start, end)


@contextmanager
def _leased(volume: Volume, user) -> Iterator[tuple[Lease, DirectRemote, Manifest]]:
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
        yield lease, remote, remote.read_manifest(lease)
    finally:
        remote.release(lease)


def _commit(lease: Lease, remote: DirectRemote, base: Manifest, new: Manifest, message: str) -> int:
    generation = lease.generation + 1
    for path, entry in new.entries.items():
        old = base.entries.get(path)
        if old is None or not old.same_content(entry):
            new.entries[path] = replace(entry, gen=generation)
        else:
            new.entries[path] = replace(entry, gen=old.gen)
    new.validate()
    counts = ChangeCounts.between(base, new)
    generation, _ = remote.commit(lease, lease.generation, new, counts, message=message)
    return generation


def _ensure_parents(manifest: Manifest, path: str) -> None:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        existing = manifest.entries.get(parent)
        if existing is None:
            manifest.entries[parent] = Entry(parent, DIR, mode=0o755)
        elif existing.type != DIR:
            raise Conflict(f"{parent!r} is a {existing.type}, not a folder")


def _spool(stream: BinaryIO, limit: int | None) -> tuple[str, str, int]:
    """Copy an upload to a temporary file, hashing as it goes and refusing it past the size limit."""
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise LimitExceeded(
                        f"the file is over the limit of {limit:,} bytes per file; "
                        "upload a smaller file (the enterprise edition lifts this limit)"
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, digest.hexdigest(), size


def file_put(volume: Volume, path: str, stream: BinaryIO, user=None) -> int:
    """Create or replace one file; returns the new generation."""
    path = safe_relpath(path)
    tmp, digest, size = _spool(stream, conf.max_file_size())
    try:
        with _leased(volume, user) as (lease, remote, base):
            new = Manifest(dict(base.entries))
            existing = new.entries.get(path)
            if existing is not None and existing.type != FILE:
                raise Conflict(f"{path!r} is a {existing.type}; delete it first")
            _ensure_parents(new, path)
            new.entries[path] = Entry(path, FILE, size, digest, existing.mode if existing else 0o644,
                                      mtime_ns=_now_ns())
            cap = volume.workspace.max_volume_size
            if cap is not None and new.size_bytes > cap:
                raise LimitExceeded(
                    f"volume {volume.name!r} would be {new.size_bytes:,} bytes, over its limit of {cap:,} bytes"
                )
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
            new.entries[target] = replace(base.entries[p], path=target)
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
            try:
                tmp, digest, size = _spool(stream, limit)
            except LimitExceeded as exc:
                raise LimitExceeded(f"{path}: {exc.message}") from exc
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
            cap = volume.workspace.max_volume_size
            if cap is not None and new.size_bytes > cap:
                raise LimitExceeded(
                    f"volume {volume.name!r} would be {new.size_bytes:,} bytes, over its limit of {cap:,} bytes"
                )
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
