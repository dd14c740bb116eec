"""Storage fault injection for reliability tests, for every backend.

    VOLUMES_STORAGE_FAULT="put_file:3:error"        the 3rd put_file raises StorageUnavailable
    VOLUMES_STORAGE_FAULT="get_file:2:truncate"     the 2nd get_file leaves only half the file
    VOLUMES_STORAGE_FAULT="put_file:1:error,get_bytes:2:error"   several at once
    VOLUMES_STORAGE_FAULT="put_file:2:transient:5"  calls 2 to 6 of put_file fail as a blip would
                                                    (connection refused: retried, see engine/retry.py)

The n-th call of that operation (counted per store, across threads) fails; the others pass
through. `error` is a permanent failure (not retried); `transient` is one that is retried. `build_store` wraps a store only when the variable is set, so it costs nothing otherwise.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import StorageUnavailable
from .base import ObjectStore

ENV = "VOLUMES_STORAGE_FAULT"
ERROR, TRUNCATE, TRANSIENT = "error", "truncate", "transient"
OPERATIONS = ("put_file", "put_bytes", "get_file", "get_bytes", "open_read", "exists", "size", "delete",
              "delete_prefix", "list", "check")
TRUNCATABLE = ("put_file", "put_bytes", "get_file", "get_bytes")


def parse(spec: str) -> dict[str, tuple]:
    """{"put_file": (3, "error"), "get_file": (2, "transient", 5), ...} from the variable's text;
    ValueError saying what is wrong."""
    faults: dict[str, tuple] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        operation, _, rest = item.partition(":")
        nth, _, kind = rest.partition(":")
        kind, _, times = kind.partition(":")
        if operation not in OPERATIONS or not nth.isdigit() or int(nth) < 1 \
                or kind not in (ERROR, TRUNCATE, TRANSIENT) or (kind == TRUNCATE and operation not in TRUNCATABLE) \
                or (times and (kind != TRANSIENT or not times.isdigit() or int(times) < 1)):
            raise ValueError(
                f"{ENV}={spec!r}: write OPERATION:N:error, OPERATION:N:truncate or OPERATION:N:transient[:COUNT], "
                f"with N >= 1, OPERATION one of {', '.join(OPERATIONS)} (truncate only for {', '.join(TRUNCATABLE)})"
            )
        faults[operation] = (int(nth), kind, int(times)) if times and int(times) > 1 else (int(nth), kind)
    return faults


def wrap(store: ObjectStore, spec: str) -> ObjectStore:
    faults = parse(spec)
    return FaultyStore(store, faults) if faults else store


class FaultyStore(ObjectStore):
    """Passes every call to `inner`, except the configured n-th call of an operation."""

    def __init__(self, inner: ObjectStore, faults: dict[str, tuple]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.label = inner.label
        self.faults = faults
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)  # backend extras (clients, abort_incomplete_uploads...)

    def _fault(self, operation: str, key: str) -> str | None:
        """The fault to inject into this call (raising it if it is an error), or None."""
        wanted = self.faults.get(operation)
        if wanted is None:
            return None
        with self._lock:
            self._calls[operation] += 1
            call = self._calls[operation]
        first, kind, *rest = wanted
        if not first <= call < first + (rest[0] if rest else 1):
            return None
        if kind == ERROR:
            raise StorageUnavailable(self.label, f"injected fault ({ENV}): call {call} of {operation} on {key!r} failed")
        if kind == TRANSIENT:
            raise StorageUnavailable(self.label, f"injected fault ({ENV}): call {call} of {operation} on {key!r} "
                                                 "failed (connection refused)", "unreachable")
        return kind

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        if self._fault("put_file", key) == TRUNCATE:  # a damaged store: written unverified
            data = Path(local_path).read_bytes()
            return self.inner.put_bytes(key, data[: len(data) // 2], create_only=create_only)
        return self.inner.put_file(key, local_path, sha256=sha256, create_only=create_only)

    @contextmanager
    def write_batch(self) -> Iterator["_FaultyBatch"]:
        """The inner store's write batch (filesystem), its put_file calls counted and failed like put_file."""
        with self.inner.write_batch() as batch:
            yield _FaultyBatch(self, batch)

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        if self._fault("put_bytes", key) == TRUNCATE:
            data = data[: len(data) // 2]
        return self.inner.put_bytes(key, data, create_only=create_only)

    def copy(self, src_key: str, dst_key: str) -> bool:
        self._fault("copy", dst_key)
        return self.inner.copy(src_key, dst_key)

    def get_file(self, key: str, local_path: str | Path) -> None:
        truncate = self._fault("get_file", key) == TRUNCATE
        self.inner.get_file(key, local_path)
        if truncate:
            os.truncate(local_path, os.path.getsize(local_path) // 2)

    def get_bytes(self, key: str) -> bytes:
        truncate = self._fault("get_bytes", key) == TRUNCATE
        data = self.inner.get_bytes(key)
        return data[: len(data) // 2] if truncate else data

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self._fault("open_read", key)
        return self.inner.open_read(key, start, end)

    def exists(self, key: str) -> bool:
        self._fault("exists", key)
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        self._fault("size", key)
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        self._fault("delete", key)
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        self._fault("delete_prefix", prefix)
        return self.inner.delete_prefix(prefix)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._fault("list", prefix)
        return self.inner.list(prefix)

    def list_with_times(self, prefix: str = ""):
        self._fault("list", prefix)
        return self.inner.list_with_times(prefix)

    def check(self) -> None:
        self._fault("check", "")
        self.inner.check()


class _FaultyBatch:
    def __init__(self, store: FaultyStore, batch) -> None:
        self.store = store
        self.batch = batch

    def __getattr__(self, name: str):  # finish, discard: the inner batch's own
        if name == "batch":
            raise AttributeError(name)
        return getattr(self.batch, name)

    def stager(self, folder_key: str):
        """No staging while put_file is failed on purpose: every blob goes through put_file, as without a batch."""
        return None if "put_file" in self.store.faults else self.batch.stager(folder_key)

    def put_file(self, key: str, local_path: str | Path, sha256: str | None = None,
                 hashed_as: tuple | None = None) -> None:
        if self.store._fault("put_file", key) == TRUNCATE:
            data = Path(local_path).read_bytes()
            with tempfile.NamedTemporaryFile() as half:
                half.write(data[: len(data) // 2])
                half.flush()
                return self.batch.put_file(key, half.name)
        self.batch.put_file(key, local_path, sha256=sha256, hashed_as=hashed_as)

    def put_bytes(self, key: str, data: bytes) -> None:
        if self.store._fault("put_bytes", key) == TRUNCATE:
            data = data[: len(data) // 2]
        self.batch.put_bytes(key, data)
