"""The storage edge: flat key/value object storage that every backend implements the same way.

Keys are relative '/'-separated strings ("volumes/acme/data/blobs/<sha256>"); a store may place
them all under its own prefix inside the bucket, container or folder. Two errors leave this
edge: `BlobMissing` for a key that does not exist, and `StorageUnavailable` for anything else
the vendor, network or disk throws (down, refused credentials, missing bucket, timeouts).
Stores are safe to use from several threads at once.

`ObjectStore` is the contract (the wrappers in faults.py and engine/retry.py implement it alone);
`BackendStore` adds what the four backends share. Each backend has its own module (filesystem.py,
s3.py, azure.py, gcs.py) over its django-storages (or Django) storage class, which holds the
configuration and owns the vendor client; a store calls that client directly where django-storages
has no equivalent (ranged reads, paginated listing, batch deletes, multipart transfers) or does not
let us set short timeouts and few retries. factory.py is the only place that turns a kind, a
configuration or a URL into a store, and names it (the label).
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import BlobMissing, IntegrityError, InvalidPath, StorageUnavailable, VolumesError

CHUNK_SIZE = 1024 * 1024  # bytes per chunk yielded by open_read
CONNECT_TIMEOUT = 2.0  # seconds to open a connection: a storage that is down fails fast
READ_TIMEOUT = 30.0  # seconds without a byte from a connected server
GIVE_UP_AFTER = 4.0  # seconds of retrying before an operation gives up (GCS)
POOL_SIZE = 32  # HTTP connections per store (engine threads x parallel parts)
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # larger files go up/down in parallel parts
PART_SIZE = 8 * 1024 * 1024
PART_CONCURRENCY = 4
DELETE_THREADS = 8


_BAD_SEGMENTS = frozenset(("", ".", ".."))


def sha256_of_file(local_path: str | Path) -> str:
    return sha256_and_stat(local_path)[0]


def sha256_and_stat(local_path: str | Path) -> tuple[str, os.stat_result]:
    """The SHA-256 of the file at `local_path` and its stat once read (a write since an earlier stat shows in it),
    never of what a link there points to: a scan hashes a file it saw, and a link put in its place (a job's leftover
    process) must not bring its target into a volume (ELOOP)."""
    digest = hashlib.sha256()
    fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        left = os.fstat(fd).st_size
        while chunk := os.read(fd, min(CHUNK_SIZE, max(left, 0) + 1)):  # no 1 MiB buffer per small file
            left -= len(chunk)
            digest.update(chunk)
        return digest.hexdigest(), os.fstat(fd)
    finally:
        os.close(fd)


@contextmanager
def removed_on_failure(path: str) -> Iterator[None]:
    """Nothing is left at `path` when the block fails: a download cut midway leaves no partial file."""
    try:
        yield
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def check_key(key: str) -> str:
    """A key must be relative, non-empty, without empty, '.' or '..' segments."""
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\x00" in key
        or "\\" in key
        or _BAD_SEGMENTS & set(key.split("/"))
    ):
        raise InvalidPath(f"{key!r} is not a valid storage key")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything) or the start of a key; may end with '/'."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str):
        raise InvalidPath(f"{prefix!r} is not a valid storage prefix")
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end})")


def changed_while_uploading(key: str, local_path: str | Path, got: str, want: str) -> IntegrityError:
    return IntegrityError(
        f"{str(local_path)!r} changed while it was uploaded as {key!r}: its bytes hash to {got}, not {want}; "
        "nothing was stored. Something still writes to the file (a process that outlived its job?); retry"
    )


class VerifyingReader:
    """Reads a local file once, front to back, hashing it as it goes; the read that would hand out
    its last bytes raises IntegrityError instead if the file does not hash to `sha256` (or is not
    `size` bytes long), so an upload streaming from it can never complete with other bytes."""

    def __init__(self, fh, size: int, sha256: str | None, key: str, path: str | Path) -> None:
        self.fh, self.size, self.sha256, self.key, self.path = fh, size, sha256, key, path
        self.digest, self.pos = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        want = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        parts, got = [], 0
        while got < want:
            chunk = self.fh.read(want - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
        self.digest.update(data)
        self.pos += len(data)
        if self.pos >= self.size or len(data) < want:
            self.verify()
        return data

    def verify(self) -> None:
        if self.pos != self.size or self.fh.read(1):
            raise IntegrityError(
                f"{str(self.path)!r} changed size while it was uploaded as {self.key!r}; nothing was stored. "
                "Something still writes to the file (a process that outlived its job?); retry"
            )
        if self.sha256 is not None and self.digest.hexdigest() != self.sha256:
            raise changed_while_uploading(self.key, self.path, self.digest.hexdigest(), self.sha256)

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


@dataclass(frozen=True)
class Presigned:
    """A short-lived request anyone may make without credentials: `method` `url` with `headers`
    (signed into the URL, so they must be sent exactly)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers)}


class ObjectStore(ABC):
    """Flat key/value object storage; `label` names it in errors (never contains secrets)."""

    kind: str = ""
    label: str = ""
    # Whether a forked process may move blobs to and from this store over connections of its own (the store opens
    # them per process): a big pull or push then shares its transfers with a fork (engine/sync.py). Not a wrapper.
    fork_safe_transfers: bool = False

    def missing(self, key: str) -> BlobMissing:
        return BlobMissing(f"object {key!r} does not exist in storage {self.label!r}", key=key, storage=self.label)

    @abstractmethod
    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        """Upload a local file; readers see the old object or the whole new one, never a part.

        sha256: the bytes are hashed as they stream; unless they match, nothing is stored
        (IntegrityError). create_only: never replace an existing object (a conditional write where the
        storage has one); returns False, writing nothing, when the key exists. True when written."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        """Store `data` under `key` (same atomicity and create_only as put_file)."""

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> bool:
        """Copy the object at `src_key` to `dst_key` inside the storage (its bytes never pass through this
        process), create-only like put_bytes: False, writing nothing, when `dst_key` exists. BlobMissing
        when `src_key` does not exist."""

    @abstractmethod
    def get_file(self, key: str, local_path: str | Path) -> None:
        """Download to exactly `local_path`, overwriting it (the caller picks a temp name)."""

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        """Download like get_file, hashing the bytes as they are written; returns their SHA-256 (hex)."""
        self.get_file(key, local_path)
        return sha256_of_file(local_path)

    def local_file(self, key: str) -> str | None:
        """The object's plain file on this machine, read without a connection (a forked process may read it
        too), for a caller that copies many small objects itself; None for every other store, and for any
        wrapper that must see each read (fault injection)."""
        return None

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory."""

    @abstractmethod
    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) (end None: to the end; clamped to the size) in chunks.

        BlobMissing is raised by this call itself, before the first chunk, so an HTTP view can
        answer 404 before it starts a response.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object with this exact key exists."""

    def absent(self, keys: list[str]) -> list[str]:
        """The keys, in order, under which no object exists (a store may answer many at once faster)."""
        return [key for key in keys if not self.exists(key)]

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key is fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`; returns how many were removed."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix` (recursive, full keys, in no particular order)."""

    def list_names(self, prefix: str, limit: int) -> set[str] | None:
        """Every key starting with `prefix`, or None as soon as there are more than `limit` (the listing stops
        there: a caller that would rather look keys up one by one than read a long listing)."""
        names = set()
        for key in self.list(prefix):
            names.add(key)
            if len(names) > limit:
                return None
        return names

    @abstractmethod
    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        """Like `list`, with each object's last-modified time (seconds since the epoch; None if unknown)."""

    def presign_get(self, key: str, expires: int) -> Presigned | None:
        """A GET of the object that works for `expires` seconds without credentials; None when this
        storage cannot sign one (filesystem storage never can)."""
        return None

    def presign_put(self, key: str, size: int | None, sha256: str, expires: int) -> Presigned | None:
        """A create-only PUT of `key` for `expires` seconds, carrying the checksum of `sha256` where the
        storage takes one. The storage may not verify the bytes: whoever accepts the object must.
        None when this storage cannot sign one."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Prove the storage is reachable and the credentials work; raises StorageUnavailable."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


def short_error(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or "no details"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REASONS = ("Connection refused", "timed out", "Name or service not known", "Temporary failure in name resolution",
            "No route to host", "Network is unreachable", "certificate verify failed", "Connection reset")


def network_reason(exc: BaseException) -> str:
    """'Connection refused', 'timed out'... from a network error, else a short description."""
    text = str(exc)
    for reason in _REASONS:
        if reason.lower() in text.lower():
            return reason.lower()
    return short_error(exc, 160)


def _join_prefix(prefix: str) -> str:
    """'a/b' or '/a/b/' -> 'a/b/'; '' stays ''."""
    prefix = (prefix or "").strip("/")
    if prefix:
        check_key(prefix)
        return prefix + "/"
    return ""


class BackendStore(ObjectStore):
    """What the four backends share: key <-> object name under the store prefix, vendor errors
    translated at one edge, local file checks, and the probe behind `check`. The wrappers
    (faults.FaultyStore, engine.retry.RetryingStore) implement ObjectStore alone and pass the rest on."""

    def __init__(self, prefix: str, label: str) -> None:
        self.prefix = _join_prefix(prefix)
        self.label = label

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _key(self, name: str) -> str:
        return name[len(self.prefix):]

    def unavailable(self, detail: str, reason: str = "other") -> StorageUnavailable:
        return StorageUnavailable(self.label, detail, reason)

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        """The vendor exception as BlobMissing (key given and object absent) or StorageUnavailable."""
        raise NotImplementedError

    @contextmanager
    def _errors(self, key: str | None = None):
        try:
            yield
        except VolumesError:
            raise
        except Exception as exc:  # the edge: nothing vendor-specific leaves a store
            raise self._translate(exc, key) from exc

    def _guarded(self, chunks: Iterator, key: str | None) -> Iterator:
        """Translate errors raised while a stream is consumed."""
        with self._errors(key):
            yield from chunks

    @staticmethod
    def _rechunk(chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Slices of at most CHUNK_SIZE bytes, whatever sizes the SDK hands out."""
        for chunk in chunks:
            for i in range(0, len(chunk), CHUNK_SIZE):
                yield chunk[i:i + CHUNK_SIZE] if len(chunk) > CHUNK_SIZE else chunk

    @staticmethod
    def _local_source(local_path: str | Path) -> str:
        """The file to upload; a missing one is the caller's error (raised as is), not the storage's."""
        os.stat(local_path)
        return str(local_path)

    @staticmethod
    def _local_target(local_path: str | Path) -> str:
        """Where to download; a missing folder is the caller's error (raised as is)."""
        parent = os.path.dirname(os.path.abspath(local_path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(errno.ENOENT, "no folder to download into", parent)
        return str(local_path)

    def _parallel_delete(self, names: Iterator[str], delete_one: Callable[[str], bool]) -> int:
        with self._errors(), ThreadPoolExecutor(DELETE_THREADS) as pool:
            return sum(pool.map(delete_one, names))

    def abort_incomplete_uploads(self, prefix: str, older_than: float | None = None) -> int:
        """Remove what interrupted uploads started before `older_than` (epoch seconds; None: all) left
        under `prefix` (never visible to list); returns how many.

        Only safe while nobody writes there (GC holds the volume's lease). Azure drops uncommitted
        blocks and GCS resumable sessions by itself after a week: nothing to do for them here."""
        return 0

    def check(self) -> None:
        """List, write and delete a small probe object under the store's prefix."""
        probe = f".volumes-check/{secrets.token_hex(8)}"
        for _ in self.list(".volumes-check/"):
            break
        self.put_bytes(probe, b"ok")
        if self.get_bytes(probe) != b"ok":
            raise self.unavailable("a test object read back different bytes")
        self.delete(probe)
