"""Storage fault injection for reliability tests, for every backend.

    VOLUMES_STORAGE_FAULT="put_file:3:error"        the 3rd put_file raises StorageUnavailable
    VOLUMES_STORAGE_FAULT="get_file:2:truncate"     the 2nd get_file leaves only half the file
    VOLUMES_STORAGE_FAULT="put_file:1:error,get_bytes:2:error"   several at once

The n-th call of that operation (counted per store, across threads) fails; the others pass
through. `build_store` wraps a store only when the variable is set, so it costs nothing otherwise.
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..exceptions import StorageUnavailable
from .base import ObjectStore

ENV = "VOLUMES_STORAGE_FAULT"
ERROR, TRUNCATE = "error", "truncate"
OPERATIONS = ("put_file", "put_bytes", "get_file", "get_bytes", "open_read", "exists", "size", "delete",
              "delete_prefix", "list", "check")
TRUNCATABLE = ("put_file", "put_bytes", "get_file", "get_bytes")


def parse(spec: str) -> dict[str, tuple[int, str]]:
    """{"put_file": (3, "error"), ...} from the variable's text; ValueError saying what is wrong."""
    faults: dict[str, tuple[int, str]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        operation, _, rest = item.partition(":")
        nth, _, kind = rest.partition(":")
        if operation not in OPERATIONS or not nth.isdigit() or int(nth) < 1 or kind not in (ERROR, TRUNCATE) \
                or (kind == TRUNCATE and operation not in TRUNCATABLE):
            raise ValueError(
                f"{ENV}={spec!r}: write OPERATION:N:error or OPERATION:N:truncate, with N >= 1, OPERATION one of "
                f"{', '.join(OPERATIONS)} (truncate only for {', '.join(TRUNCATABLE)})"
            )
        faults[operation] = (int(nth), kind)
    return faults


def wrap(store: ObjectStore, spec: str) -> ObjectStore:
    faults = parse(spec)
    return FaultyStore(store, faults) if faults else store


class FaultyStore(ObjectStore):
    """Passes every call to `inner`, except the configured n-th call of an operation."""

    def __init__(self, inner: ObjectStore, faults: dict[str, tuple[int, str]]) -> None:
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
        if call != wanted[0]:
            return None
        if wanted[1] == ERROR:
            raise StorageUnavailable(self.label, f"injected fault ({ENV}): call {call} of {operation} on {key!r} failed")
        return wanted[1]

    def put_file(self, key: str, local_path: str | Path) -> None:
        if self._fault("put_file", key) == TRUNCATE:
            data = Path(local_path).read_bytes()
            return self.inner.put_bytes(key, data[: len(data) // 2])
        self.inner.put_file(key, local_path)

    def put_bytes(self, key: str, data: bytes) -> None:
        if self._fault("put_bytes", key) == TRUNCATE:
            data = data[: len(data) // 2]
        self.inner.put_bytes(key, data)

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

    def check(self) -> None:
        self._fault("check", "")
        self.inner.check()
