"""Riding out storage blips: transient errors are retried with backoff for a bounded time.

A storage that refuses connections, times out or answers 5xx for a few seconds should not throw
away a job's work at push (or fail its pull). `RetryingStore` wraps the store the engine uses and
retries such errors (`StorageUnavailable.transient`) with exponential backoff until
`VOLUMES_STORAGE_RETRY_FOR` seconds have passed since the first failed attempt began; anything
else (refused credentials, a missing bucket or object) fails at once. Every operation the engine
does is safe to repeat: blobs are content-addressed, manifests have fresh names, downloads
overwrite their temp file.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .. import conf
from ..exceptions import ServerUnavailable, StorageUnavailable
from ..storage.base import ObjectStore

logger = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_DELAY = 0.25
MAX_DELAY = 5.0


def retrying(operation: Callable[[], T], what: str, budget: float | None = None,
             notify: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """operation(), retried on transient StorageUnavailable for up to `budget` seconds (the setting)."""
    budget = float(conf.get("STORAGE_RETRY_FOR")) if budget is None else budget
    deadline: float | None = None
    delay = FIRST_DELAY
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            result = operation()
        except StorageUnavailable as exc:
            if not exc.transient or budget <= 0:
                raise
            now = time.monotonic()
            if deadline is None:
                # From the start of the first failed attempt: an SDK's own retries inside it count too.
                deadline = started + budget
                message = f"{_unavailable(exc)} during {what}; retrying for up to {budget:g} s"
                logger.warning(message)
                if notify is not None:
                    notify(message)
            if now >= deadline:
                raise _gave_up(exc, budget) from exc
            attempt += 1
            pause = min(delay * random.uniform(0.8, 1.2), max(0.0, deadline - now))
            sleep(pause)
            delay = min(delay * 2, MAX_DELAY)
            continue
        if attempt:
            logger.warning("%s succeeded after %d retries", what, attempt)
        return result


def _unavailable(exc: StorageUnavailable) -> str:
    if isinstance(exc, ServerUnavailable):
        return f"the server is unavailable ({exc.detail})"
    if not exc.storage:  # rebuilt by an agent from an answer without storage details (volumes.exceptions.public_error)
        return "the volume's storage is unavailable"
    return f"storage {exc.storage!r} is unavailable ({exc.detail})"


def _gave_up(exc: StorageUnavailable, budget: float) -> StorageUnavailable:
    """The last error, saying that retrying did not help; the same kind, so callers still tell server from storage."""
    detail = f"{exc.detail}; still failing after retrying for {budget:g} s"
    if isinstance(exc, ServerUnavailable):
        return ServerUnavailable(detail, exc.reason)
    if not exc.storage:
        return exc
    return StorageUnavailable(exc.storage, detail, exc.reason)


class RetryingStore(ObjectStore):
    """An ObjectStore that retries the transient errors of `inner` (see module docstring).

    `notify` (settable later, e.g. to a job's log) hears once per operation that starts retrying."""

    def __init__(self, inner: ObjectStore, budget: float | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.label = inner.label
        self.fork_safe_transfers = inner.fork_safe_transfers  # each process retries its own
        self.budget = budget
        self.notify = notify
        self._notified = threading.Event()  # one line in the job log per outage, not one per thread

    def __getattr__(self, name: str):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _notify_once(self, message: str) -> None:
        if self.notify is not None and not self._notified.is_set():
            self._notified.set()
            self.notify(message)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        result = retrying(operation, what, self.budget, self._notify_once)
        return result

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        # A create-only write repeated after a lost answer reports False (it exists): the object is
        # ours, content-addressed or uniquely named, so that is fine for the engine.
        return self._call(f"an upload of {key}", lambda: self.inner.put_file(
            key, local_path, sha256=sha256, create_only=create_only))

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        attempts = 0

        def write() -> bool:
            nonlocal attempts
            attempts += 1
            return self.inner.put_bytes(key, data, create_only=create_only)

        written = self._call(f"a write of {key}", write)
        if not written and create_only and attempts > 1:
            # Perhaps our own earlier attempt landed and only its answer was lost: same bytes, ours.
            return self._call(f"a read of {key}", lambda: self.inner.get_bytes(key)) == data
        return written

    def copy(self, src_key: str, dst_key: str) -> bool:
        attempts = 0

        def copy() -> bool:
            nonlocal attempts
            attempts += 1
            return self.inner.copy(src_key, dst_key)

        copied = self._call(f"a copy of {src_key}", copy)
        # A create-only copy repeated after a lost answer finds its own earlier copy: same key, same bytes.
        return copied or attempts > 1

    def get_file(self, key: str, local_path: str | Path) -> None:
        self._call(f"a download of {key}", lambda: self.inner.get_file(key, local_path))

    @contextmanager
    def write_batch(self) -> Iterator["_RetryingBatch"]:
        """The inner store's write batch (filesystem), each of its uploads retried like put_file."""
        with self.inner.write_batch() as batch:
            yield _RetryingBatch(self, batch)

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        return self._call(f"a download of {key}", lambda: self.inner.get_file_sha256(key, local_path))

    def local_file(self, key: str) -> str | None:
        return self.inner.local_file(key)  # the caller falls back to get_file_sha256 (retried) on any error

    def get_bytes(self, key: str) -> bytes:
        return self._call(f"a read of {key}", lambda: self.inner.get_bytes(key))

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self._call(f"a read of {key}", lambda: self.inner.open_read(key, start, end))

    def exists(self, key: str) -> bool:
        return self._call(f"a lookup of {key}", lambda: self.inner.exists(key))

    def absent(self, keys: list[str]) -> list[str]:
        return self._call(f"a lookup of {len(keys):,} objects", lambda: self.inner.absent(keys))

    def size(self, key: str) -> int:
        return self._call(f"a lookup of {key}", lambda: self.inner.size(key))

    def delete(self, key: str) -> None:
        self._call(f"a delete of {key}", lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> int:
        return self._call(f"a delete of {prefix}", lambda: self.inner.delete_prefix(prefix))

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(self._call(f"a listing of {prefix}", lambda: list(self.inner.list(prefix))))

    def list_names(self, prefix: str, limit: int) -> set[str] | None:
        return self._call(f"a listing of {prefix}", lambda: self.inner.list_names(prefix, limit))

    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        return iter(self._call(f"a listing of {prefix}", lambda: list(self.inner.list_with_times(prefix))))

    def check(self) -> None:
        self._call("a check", self.inner.check)


class _RetryingBatch:
    def __init__(self, store: RetryingStore, batch) -> None:
        self.store = store
        self.batch = batch

    def __getattr__(self, name: str):  # finish, discard: the inner batch's own
        if name == "batch":
            raise AttributeError(name)
        return getattr(self.batch, name)

    def put_file(self, key: str, local_path: str | Path, sha256: str | None = None,
                 hashed_as: tuple | None = None) -> None:
        self.store._call(f"an upload of {key}",
                         lambda: self.batch.put_file(key, local_path, sha256=sha256, hashed_as=hashed_as))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.store._call(f"a write of {key}", lambda: self.batch.put_bytes(key, data))
