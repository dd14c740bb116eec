"""Objects as files under a root folder, through Django's FileSystemStorage (safe_join keeps every
path under the root). Writes go to a temp file beside the target, then an atomic rename or link."""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import VolumesError
from .base import CHUNK_SIZE, BackendStore, changed_while_uploading, check_prefix, check_range, short_error
from .filebatch import FileBatch
from .localfiles import TMP_SUFFIX, move_new



def _listings(paths: list[str]) -> dict[str, set[str]]:
    """folder -> names of its files, for the folders of `paths` that one listing answers faster than a stat a path:
    asked about 64 times or more, and (by the folder's size, which grows with its entries: 20 to about 130 bytes
    an entry on tmpfs, ext4, XFS, btrfs) not holding many more entries than that."""
    asked = Counter(path.rpartition("/")[0] for path in paths)
    listed = {}
    for folder, count in asked.items():
        if count < 64:
            continue
        try:
            if os.stat(folder).st_size > 128 * count:
                continue
            with os.scandir(folder) as entries:
                listed[folder] = {entry.name for entry in entries if entry.is_file()}
        except FileNotFoundError:
            listed[folder] = set()
    return listed


class FileSystemStore(BackendStore):
    """Files under a root folder; writes go to a temp file in the same folder, then os.replace."""

    kind = "filesystem"

    def __init__(self, root: str, prefix: str = "", *, label: str) -> None:
        from django.core.files.storage import FileSystemStorage

        self.root = os.path.normpath(root)  # absolute: factory.build_store checked it
        super().__init__(prefix, label)
        self.storage = FileSystemStorage(location=self.root, base_url="/unused/")
        self._folders: dict[str, str] = {}  # folder name -> its path, as safe_join made it

    def _path(self, key: str) -> str:
        """The key's file, never outside the root: its folder goes through safe_join (once per folder: a push
        of 10,000 blobs into one folder paid 25 us a blob for it), and check_key has made the last
        component a plain name (no "..", no "/", no NUL)."""
        folder, _, name = self._name(key).rpartition("/")
        path = self._folders.get(folder)
        if path is None:
            path = self.storage.path(folder) if folder else self.root
            if len(self._folders) > 10_000:
                self._folders.clear()
            self._folders[folder] = path
        return f"{path}/{name}"

    def _root_problem(self) -> str | None:
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            return f"the root {self.root!r} is not a folder"
        return None

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        problem = self._root_problem()
        if problem:
            return self.unavailable(problem)
        if key is not None and isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            return self.missing(key)
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return self.unavailable(f"no permission to use {exc.filename or self.root!r} ({exc.strerror})", "denied")
        return self.unavailable(short_error(exc))

    def _write(self, key: str, fill: Callable[[int], None], create_only: bool = False) -> bool:
        path = self._path(key)
        with self._errors():
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)[:100]}.{secrets.token_hex(6)}{TMP_SUFFIX}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                try:
                    fill(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if not create_only:
                    os.replace(tmp, path)
                    return True
                return move_new(tmp, path)  # exclusive create: False if the key exists, never replaces it
            finally:
                try:
                    os.unlink(tmp)  # still there when an error was raised
                except OSError:
                    pass

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        source = self._local_source(local_path)

        def fill(fd: int) -> None:
            digest = hashlib.sha256()
            with open(source, "rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
                while chunk := src.read(CHUNK_SIZE):
                    digest.update(chunk)
                    dst.write(chunk)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise changed_while_uploading(key, source, digest.hexdigest(), sha256)

        return self._write(key, fill, create_only)

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        def fill(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

        return self._write(key, fill, create_only)

    def copy(self, src_key: str, dst_key: str) -> bool:
        """A hard link: objects are never changed in place (a write replaces or links a new file). Where
        links are refused (another file system, no permission), the kernel copies (copy_file_range)."""
        src, dst = self._path(src_key), self._path(dst_key)
        with self._errors(src_key):
            os.stat(src)  # BlobMissing before anything is made
        with self._errors():
            os.makedirs(os.path.dirname(dst), exist_ok=True)
        with self._errors(src_key):
            try:
                os.link(src, dst)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
                    raise
            with open(src, "rb") as source:
                size = os.fstat(source.fileno()).st_size

                def fill(fd: int) -> None:
                    copied = 0
                    while copied < size:
                        done = os.copy_file_range(source.fileno(), fd, size - copied)
                        if not done:
                            raise OSError(errno.EIO, "the object changed size while it was copied", src)
                        copied += done

                return self._write(dst_key, fill, create_only=True)

    def get_file(self, key: str, local_path: str | Path) -> None:
        path = self._path(key)
        with self._errors(key):
            src = open(path, "rb")
        with src, open(local_path, "wb") as dst:  # errors of the local target are raised as they are
            while True:
                with self._errors(key):
                    chunk = src.read(CHUNK_SIZE)
                if not chunk:
                    break
                dst.write(chunk)

    def local_file(self, key: str) -> str:
        return self._path(key)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors(key), open(path, "rb") as f:
            return f.read()

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        path = self._path(key)
        with self._errors(key):
            f = open(path, "rb")

        def chunks() -> Iterator[bytes]:
            with f:
                f.seek(start)
                remaining = None if end is None else end - start
                while remaining is None or remaining > 0:
                    data = f.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                    if not data:
                        return
                    if remaining is not None:
                        remaining -= len(data)
                    yield data

        return self._guarded(chunks(), key)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._errors():
            if os.path.isfile(path):
                return True
            problem = self._root_problem()
            if problem:
                raise self.unavailable(problem)
            return False

    def absent(self, keys: list[str]) -> list[str]:
        """One stat a key under one error guard (a cold push asks this for 10,000 blobs, which took 20 us each
        through exists()), or one listing of a folder asked about often that is not much bigger than the ask."""
        paths = [self._path(key) for key in keys]
        with self._errors():
            listed = _listings(paths)
            missing = []
            for key, path in zip(keys, paths):
                folder, _, name = path.rpartition("/")
                names = listed.get(folder)
                if (name not in names) if names is not None else not os.path.isfile(path):
                    missing.append(key)
            if missing:
                problem = self._root_problem()
                if problem:
                    raise self.unavailable(problem)
        return missing

    def size(self, key: str) -> int:
        path = self._path(key)
        with self._errors(key):
            if os.path.isdir(path):
                raise FileNotFoundError(path)
            return os.stat(path).st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors():
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # no such object
                problem = self._root_problem()
                if problem:
                    raise self.unavailable(problem) from None

    def _walk(self, prefix: str, with_temp: bool = False) -> Iterator[tuple[str, str]]:
        """(key, path) of every file whose key starts with prefix."""
        check_prefix(prefix)
        name_prefix = self.prefix + prefix
        folder_name = name_prefix.rpartition("/")[0]
        top = os.path.join(self.root, *folder_name.split("/")) if folder_name else self.root
        problem = self._root_problem()
        if problem:
            raise self.unavailable(problem)

        def raise_error(exc: OSError) -> None:
            if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                raise exc

        for dirpath, dirnames, filenames in os.walk(top, onerror=raise_error):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if not (base.startswith(name_prefix) or name_prefix.startswith(base)):
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if (base + d + "/").startswith(name_prefix)
                           or name_prefix.startswith(base + d + "/")]
            for filename in filenames:
                name = base + filename
                if not name.startswith(name_prefix):
                    continue
                if filename.endswith(TMP_SUFFIX) and not with_temp:
                    continue
                yield self._key(name), os.path.join(dirpath, filename)

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        return self._guarded((key for key, _ in self._walk(prefix)), None)

    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        check_prefix(prefix)

        def times() -> Iterator[tuple[str, float | None]]:
            for key, path in self._walk(prefix):
                try:
                    yield key, os.stat(path).st_mtime
                except FileNotFoundError:
                    continue  # deleted meanwhile

        return self._guarded(times(), None)

    def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        count = 0
        with self._errors():
            for key, path in list(self._walk(prefix, with_temp=True)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                count += not path.endswith(TMP_SUFFIX)
            if prefix.endswith("/"):  # drop the folders left empty beneath the prefix
                top = os.path.join(self.root, *(self.prefix + prefix).rstrip("/").split("/"))
                for dirpath, _dirnames, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
        return count

    def abort_incomplete_uploads(self, prefix: str, older_than: float | None = None) -> int:
        """The temp files of writes killed before their rename."""
        count = 0
        with self._errors():
            for _key, path in list(self._walk(prefix, with_temp=True)):
                if path.endswith(TMP_SUFFIX):
                    try:
                        if older_than is not None and os.stat(path).st_mtime > older_than:
                            continue  # maybe a write still in progress
                        os.unlink(path)
                        count += 1
                    except FileNotFoundError:
                        pass
        return count

    def check(self) -> None:
        with self._errors():
            os.makedirs(self.root, exist_ok=True)
        super().check()

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        """get_file and the hash in one pass over the bytes (they are read once)."""
        path = self._path(key)
        digest = hashlib.sha256()
        with self._errors(key):
            src = os.open(path, os.O_RDONLY)
        try:
            left = os.fstat(src).st_size
            dst = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                while True:
                    with self._errors(key):
                        chunk = os.read(src, min(CHUNK_SIZE, max(left, 0) + 1))  # no 1 MiB buffer per small file
                    if not chunk:
                        break
                    left -= len(chunk)
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(dst, view):]
                    if left == 0:
                        break  # all its bytes: no read to find the end (objects never change once stored)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return digest.hexdigest()

    @contextmanager
    def write_batch(self) -> Iterator[FileBatch]:
        """Blob writes that share one flush: `batch.put_file` copies (and checks the hash) to temp files;
        on a clean exit every temp file is flushed to disk with one syncfs, then linked to its name
        (create-only: an existing object is kept) and the folders flushed. Nothing is visible under its
        name before its bytes are durable; on an error the temp files are removed."""
        batch = FileBatch(self)
        try:
            yield batch
            with self._errors():
                batch.finish()
        except BaseException:
            batch.discard()
            raise
