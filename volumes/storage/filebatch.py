"""A filesystem store's batch of blob writes (FileSystemStore.write_batch): temp files beside their names, made
durable with one flush and then named create-only, and the copies a push stages while its scan hashes."""
from __future__ import annotations

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import VolumesError
from .base import CHUNK_SIZE, changed_while_uploading, sha256_and_stat
from .localfiles import TMP_SUFFIX, copy_if_unchanged, move_new, stat_key, syncfs

if TYPE_CHECKING:
    from .filesystem import FileSystemStore


NAMED_ON_TWO_THREADS = 2_000  # temp files; two threads name 10,000 in 44 ms instead of 65 (tmpfs, 2 cores)


def _name_all(pending: list[tuple[str, str]]) -> None:
    for tmp, path in pending:
        move_new(tmp, path)  # create-only: an object already stored under this name stays as it is


class FileBatch:
    """The temp files of one FileSystemStore.write_batch (thread-safe)."""

    def __init__(self, store: FileSystemStore) -> None:
        self.store = store
        self.pending: list[tuple[str, str]] = []  # (temp path, final path)
        self.folders: set[str] = set()
        self.lock = threading.Lock()
        self.staged: dict[str, str] = {}  # a SHA-256 -> the temp file of those bytes (stage, keep)
        self.loose: set[str] = set()  # temp files staged and not yet named: removed unless adopted
        self.stage_in = ""  # the key folder (ending in /) of the blobs `stage` writes

    def stager(self, folder_key: str) -> "FileBatch":
        """This batch, staging blobs in the folder of `folder_key` (a key prefix ending in /)."""
        self.stage_in = folder_key
        return self

    def stage(self, source: str, hashed_as: tuple) -> tuple[str, os.stat_result, str | None]:
        """Hash `source` while copying it to a new temp file in the folder of `stage_in`, for a blob whose name is
        its hash (keep, adopt): one read of the file instead of one to hash it and one to copy it. Returns the hash,
        the file's stat once read and the temp file; no temp file (None) when `source` is no longer, after the copy,
        the file `hashed_as` (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) describes (a write meanwhile, which
        its upload then finds) or the store could not take the copy (its upload then retries or says why)."""
        try:
            _, tmp, dst = self._temp(self.stage_in + "staged")
        except VolumesError:
            return (*sha256_and_stat(source), None)
        digest, copied = hashlib.sha256(), True
        try:
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # never a link put in its place
            try:
                left = hashed_as[2]
                while chunk := os.read(src, min(CHUNK_SIZE, max(left, 0) + 1)):  # no 1 MiB buffer per small file
                    left -= len(chunk)
                    digest.update(chunk)
                    view = memoryview(chunk)
                    try:
                        while copied and view:
                            view = view[os.write(dst, view):]
                    except OSError:
                        copied = False
                read = os.fstat(src)
                copied = copied and stat_key(read) == tuple(hashed_as)
            finally:
                os.close(src)
        except BaseException:
            copied = False
            raise
        finally:
            os.close(dst)
            if not copied:
                os.unlink(tmp)
        if not copied:
            return digest.hexdigest(), read, None
        with self.lock:
            self.loose.add(tmp)
        return digest.hexdigest(), read, tmp

    def keep(self, digest: str, tmp: str) -> None:
        """Hold a staged temp file (staged in this process or a forked one) for the blob `digest`: one a hash."""
        with self.lock:
            self.loose.add(tmp)
            if digest in self.staged:
                self.loose.discard(tmp)
                os.unlink(tmp)
            else:
                self.staged[digest] = tmp

    def adopt(self, key: str, digest: str) -> bool:
        """Store the staged temp file of `digest` as `key` with the rest of the batch; False if none was staged."""
        with self.lock:
            tmp = self.staged.pop(digest, None)
            if tmp is None:
                return False
            self.loose.discard(tmp)
            self.pending.append((tmp, self.store._path(key)))
        return True

    def forked(self) -> None:
        """In a forked process: the temp files listed so far are the parent's, which names or removes them."""
        self.pending, self.staged, self.loose = [], {}, set()

    def put_file(self, key: str, local_path: str | Path, sha256: str | None = None,
                 hashed_as: tuple | None = None) -> None:
        """Copy `local_path` to a temp file under `key`'s folder; with `sha256`, refuse bytes that do not
        hash to it (the file changed since it was hashed). Only a complete, verified copy is kept.
        `hashed_as`: the file's stat key when it was hashed to `sha256`; while it is still that file, it is
        copied without hashing it again (copy_if_unchanged)."""
        store = self.store
        source = os.fspath(local_path) if hashed_as is not None else store._local_source(local_path)
        path, tmp, fd = self._temp(key)
        try:
            try:
                with store._errors():
                    copied = sha256 is not None and hashed_as is not None and copy_if_unchanged(source, hashed_as, fd)
                if not copied:
                    digest = hashlib.sha256()
                    src = os.open(source, os.O_RDONLY)
                    try:
                        left = os.fstat(src).st_size
                        while chunk := os.read(src, min(CHUNK_SIZE, max(left, 0) + 1)):
                            left -= len(chunk)
                            digest.update(chunk)
                            view = memoryview(chunk)
                            with store._errors():
                                while view:
                                    view = view[os.write(fd, view):]
                    finally:
                        os.close(src)
            finally:
                os.close(fd)
            if not copied and sha256 is not None and digest.hexdigest() != sha256:
                raise changed_while_uploading(key, source, digest.hexdigest(), sha256)
        except BaseException:
            os.unlink(tmp)
            raise
        with self.lock:
            self.pending.append((tmp, path))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write `data` to a temp file under `key`'s folder, stored (create-only) with the rest at the end."""
        path, tmp, fd = self._temp(key)
        try:
            with self.store._errors():
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        with self.lock:
            self.pending.append((tmp, path))

    def _temp(self, key: str) -> tuple[str, str, int]:
        """(the key's path, a new temp file beside it, that file open for writing)."""
        store = self.store
        path = store._path(key)
        with store._errors():
            folder, _, name = path.rpartition("/")
            if folder not in self.folders:  # made (or found) once per batch
                os.makedirs(folder, exist_ok=True)
                self.folders.add(folder)
            tmp = f"{folder}/.{name[:100]}.{secrets.token_hex(6)}{TMP_SUFFIX}"
            return path, tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)

    def finish(self) -> None:
        """Flush every temp file, name each (create-only) and flush the folders. A forked process that took a
        share of the uploads finishes its own files (so the names are made in both processes at once). Staged
        files not adopted (their blob was there already) are removed first, so they are not flushed."""
        self._remove_loose()
        if not self.pending:
            return
        syncfs(self.store.root)
        pending = self.pending
        if len(pending) >= NAMED_ON_TWO_THREADS:  # renameat2 through ctypes lets go of the GIL
            with ThreadPoolExecutor(2) as pool:
                for _ in pool.map(_name_all, (pending[0::2], pending[1::2])):
                    pass
        else:
            _name_all(pending)
        for folder in {path.rpartition("/")[0] for _, path in pending}:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.pending = []

    def discard(self) -> None:
        self._remove_loose()
        for tmp, _ in self.pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.pending = []

    def _remove_loose(self) -> None:
        for tmp in self.loose:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.loose, self.staged = set(), {}
