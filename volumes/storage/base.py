"""The storage edge: flat key/value object storage that every backend implements the same way.

Keys are relative '/'-separated strings ("volumes/acme/data/blobs/<sha256>"); a store may place
them all under its own prefix inside the bucket, container or folder. Two errors leave this
edge: `BlobMissing` for a key that does not exist, and `StorageUnavailable` for anything else
the vendor, network or disk throws (down, refused credentials, missing bucket, timeouts).
Stores are safe to use from several threads at once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from ..exceptions import BlobMissing, InvalidPath

CHUNK_SIZE = 1024 * 1024  # bytes per chunk yielded by open_read


def check_key(key: str) -> str:
    """A key must be relative, non-empty, without empty, '.' or '..' segments."""
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\x00" in key
        or "\\" in key
        or any(part in ("", ".", "..") for part in key.split("/"))
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


class ObjectStore(ABC):
    """Flat key/value object storage; `label` names it in errors (never contains secrets)."""

    kind: str = ""
    label: str = ""

    def missing(self, key: str) -> BlobMissing:
        return BlobMissing(f"object {key!r} does not exist in storage {self.label!r}", key=key, storage=self.label)

    @abstractmethod
    def put_file(self, key: str, local_path: str | Path) -> None:
        """Upload a local file; readers see the old object or the whole new one, never a part."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (same atomicity as put_file)."""

    @abstractmethod
    def get_file(self, key: str, local_path: str | Path) -> None:
        """Download to exactly `local_path`, overwriting it (the caller picks a temp name)."""

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

    @abstractmethod
    def check(self) -> None:
        """Prove the storage is reachable and the credentials work; raises StorageUnavailable."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"
