"""The engine's view of the server: leases, manifests, blobs and commits.

`DirectRemote` talks to the database and the object storage itself (web server,
Celery workers, management commands). `volumes.agent.HttpRemote` does the same
over the REST API for agent workers that hold no credentials.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator

from .. import conf
from ..exceptions import NotFound
from ..models import Volume
from ..storage.base import CHUNK_SIZE, ObjectStore
from ..storage.factory import store_for_volume
from ..storage.keys import blob_key
from . import commits, leases, manifest_store, pins
from .commits import ChangeCounts
from .faults import crash_point
from .retry import RetryingStore
from .leases import Holder, Lease
from .manifest import Manifest
from .pins import Pin

# Blob lookups in a storage over the network: from LIST_AFTER on, when the volume holds at most LISTED_PER_ASKED blobs
# per blob asked about, its blob folder is listed instead (stopping past that many names), else each is looked up.
# A page of about 1,000 names is one request, but a slow one: 7-10 lookups on S3, 60-150 on moto.
LIST_AFTER = 64
LISTED_PER_ASKED = 5


class Remote(ABC):
    notify: Callable[[str], None] | None = None  # hears about storage trouble worth a line in the job log

    def prepare(self, lease: Lease) -> None:
        """Called in the syncing thread before blobs move on worker threads."""

    def pull_threads(self, lease: Lease) -> int:
        return conf.get("TRANSFER_THREADS")

    def blob_folder(self, lease: Lease) -> str | None:
        """The folder where the volume's blobs are plain files named by their hash, on this machine and read
        without a connection a forked process would share (a pull copies them itself, and may share the
        copying with a fork); None for every other store."""
        return None

    def push_threads(self, lease: Lease) -> int:
        return conf.get("TRANSFER_THREADS")

    def transfers_in_fork(self, lease: Lease) -> bool:
        """Whether a forked process may download and upload blobs of this volume, over connections of its own."""
        return False

    def upload_batch(self, lease: Lease) -> ContextManager[Any]:
        """Uploads made inside may be finished (made durable and visible) only when it exits. It gives a local
        store's batch of blob files (storage/filesystem.py: a forked process that takes a share of the uploads
        finishes its own), else None."""
        return nullcontext()

    def stager(self, lease: Lease) -> Any:
        """Inside upload_batch, for a local store: the batch, set to stage this volume's blobs. Its `stage(path,
        stat key)` hashes a file while it copies it into the store, so a push reads it once; the scan gives what
        was staged to its `keep(hash, temp file)`, and `adopt_blob` names it. None where a blob is uploaded only
        once its hash is known."""
        return None

    def adopt_blob(self, lease: Lease, digest: str) -> bool:
        """Store the file staged for `digest` as its blob (with the batch); False if none was staged."""
        return False

    @abstractmethod
    def acquire(
        self, workspace_id: str, volume_name: str, holder: str, job_id: int | None = None,
        wait: float | None = None, on_wait: Callable[[Holder | None], None] | None = None,
    ) -> Lease: ...

    @abstractmethod
    def renew(self, lease: Lease) -> None: ...

    @abstractmethod
    def release(self, lease: Lease) -> bool: ...

    # Readers: a pin on the committed generation instead of the lease (engine/pins.py).
    @abstractmethod
    def pin(self, workspace_id: str, volume_name: str, holder: str, job_id: int | None = None) -> Pin: ...

    @abstractmethod
    def renew_pin(self, pin: Pin) -> None: ...

    @abstractmethod
    def release_pin(self, pin: Pin) -> bool: ...

    @abstractmethod
    def read_manifest(self, lease: Lease, like: Manifest | None = None) -> Manifest:
        """The manifest of the generation current when the lease was taken (empty at generation 0). `like`: a
        generation this worker holds, whose entries may stand in for the same ones stored (manifest_store.read)."""

    def check_room(self, lease: Lease, manifest: Manifest, counts: ChangeCounts) -> None:
        """LimitExceeded now if the commit would be refused for the volume's cap or the workspace's quota
        (`commits.check_room`; the commit checks again, and a server checks an agent's commit itself)."""

    @abstractmethod
    def missing_blobs(self, lease: Lease, hashes: set[str], stored: int | None = None) -> set[str]:
        """The hashes with no blob in the volume's storage. `stored`: how many blobs the volume is known to hold
        (its base generation's), which tells a store over the network whether listing them beats asking each."""

    def will_download(self, lease: Lease, hashes: set[str]) -> None:
        """The blobs a pull is about to download (an agent asks the server for presigned URLs of these only)."""

    @abstractmethod
    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None: ...

    @abstractmethod
    def upload_blob(self, lease: Lease, digest: str, local_path: str, hashed_as: tuple | None = None) -> None:
        """Store the file as the blob `digest`, refusing other bytes. `hashed_as`: the file's stat key when the
        caller hashed it (a local store may then copy it without hashing it again while it is that file)."""

    def download_blob_hashed(self, lease: Lease, digest: str, local_path: str) -> str:
        """Download like download_blob; returns the SHA-256 (hex) of the bytes written."""
        self.download_blob(lease, digest, local_path)
        sha = hashlib.sha256()
        with open(local_path, "rb", buffering=0) as fh:
            while chunk := fh.read(CHUNK_SIZE):
                sha.update(chunk)
        return sha.hexdigest()

    @abstractmethod
    def commit(
        self, lease: Lease, parent: int, manifest: Manifest, counts: ChangeCounts,
        job_id: int | None = None, message: str = "",
    ) -> tuple[int, str]:
        """Write the manifest and move the volume to it under the fencing check.
        Returns (new generation, manifest key)."""

    @abstractmethod
    def commit_many(self, prepared: list) -> list[tuple[int, str]]:
        """Commit each prepared change (`sync.PreparedCommit`: lease, base, manifest, counts, job_id,
        message; parent is the lease's generation) through the one commit path: all or none.
        Returns (new generation, manifest key) per item, in order."""


class DirectRemote(Remote):
    """Database + object storage in this process."""

    def __init__(self, user_id: int | None = None) -> None:
        self.user_id = user_id
        self._stores: dict[int, tuple[ObjectStore, str]] = {}
        self._batches: dict[int, object] = {}

    def prepare(self, lease: Lease) -> None:
        # Resolve the storage here: transfer threads must not query the database (their own
        # connections would not see this thread's transaction, and would be left open).
        self._store(lease)

    def blob_folder(self, lease: Lease) -> str | None:
        store, prefix = self._store(lease)
        sample = store.local_file(blob_key(prefix, "0" * 64))
        return None if sample is None else sample.rpartition("/")[0]

    def pull_threads(self, lease: Lease) -> int:
        # Pulling from a local disk is mostly small syscalls and Python per file: threads only queued
        # for the GIL (a cold pull of 10,000 files took 12 s with 8 threads, 3.8 s with one). Pushes
        # (hashing, bigger writes) still gain from threads; network stores overlap latency.
        store, _ = self._store(lease)
        return 1 if store.kind == "filesystem" else conf.get("TRANSFER_THREADS")

    def transfers_in_fork(self, lease: Lease) -> bool:
        return self._store(lease)[0].fork_safe_transfers

    def push_threads(self, lease: Lease) -> int:
        # Batched local writes are small syscalls and Python per file, like pulls (see above).
        store, _ = self._store(lease)
        return 1 if store.kind == "filesystem" else conf.get("TRANSFER_THREADS")

    @contextmanager
    def upload_batch(self, lease: Lease) -> Iterator[Any]:
        # A local folder flushes the whole batch at once (one syncfs instead of an fsync per blob).
        store, _ = self._store(lease)
        if store.kind != "filesystem":
            yield None
            return
        with store.write_batch() as batch:
            self._batches[lease.volume_id] = batch
            try:
                yield batch
            finally:
                self._batches.pop(lease.volume_id, None)

    def stager(self, lease: Lease):
        batch = self._batches.get(lease.volume_id)
        if batch is None:
            return None
        _, prefix = self._store(lease)
        return batch.stager(blob_key(prefix, "0" * 64)[:-64])

    def adopt_blob(self, lease: Lease, digest: str) -> bool:
        _, prefix = self._store(lease)
        batch = self._batches.get(lease.volume_id)
        if batch is None or not batch.adopt(blob_key(prefix, digest), digest):
            return False
        crash_point("push.after_blob_upload")
        return True

    def _store(self, lease: Lease) -> tuple[ObjectStore, str]:
        if lease.volume_id not in self._stores:
            # all_objects: a reader pinned before the volume went to the trash still reads it (engine/pins.py).
            volume = Volume.all_objects.select_related("storage").get(pk=lease.volume_id)
            store, prefix = store_for_volume(volume)
            # Transient errors are retried for VOLUMES_STORAGE_RETRY_FOR seconds (engine/retry.py).
            self._stores[lease.volume_id] = (
                RetryingStore(store, notify=lambda line: self.notify and self.notify(line)), prefix,
            )
        return self._stores[lease.volume_id]

    def _volume_id(self, workspace_id: str, volume_name: str) -> int:
        volume_id = (
            Volume.objects.named(workspace_id, volume_name)
            .values_list("pk", flat=True)
            .first()
        )
        if volume_id is None:
            raise NotFound.volume(volume_name, workspace_id)
        return volume_id

    def acquire(self, workspace_id, volume_name, holder, job_id=None, wait=None, on_wait=None) -> Lease:
        return leases.acquire(self._volume_id(workspace_id, volume_name), holder, job_id=job_id, wait=wait,
                              on_wait=on_wait)

    def pin(self, workspace_id, volume_name, holder, job_id=None) -> Pin:
        return pins.pin(self._volume_id(workspace_id, volume_name), holder, job_id=job_id)

    def renew_pin(self, pin: Pin) -> None:
        pins.renew(pin)

    def release_pin(self, pin: Pin) -> bool:
        return pins.release(pin)

    def renew(self, lease: Lease) -> None:
        leases.renew(lease)

    def release(self, lease: Lease) -> bool:
        return leases.release(lease)

    def read_manifest(self, lease: Lease, like: Manifest | None = None) -> Manifest:
        if not lease.manifest_key:
            return Manifest()
        store, _ = self._store(lease)
        return manifest_store.read(store, lease.manifest_key, like)

    def check_room(self, lease: Lease, manifest: Manifest, counts: ChangeCounts) -> None:
        commits.check_room(lease.volume_id, lease.generation + 1, manifest, counts)

    def missing_blobs(self, lease: Lease, hashes: set[str], stored: int | None = None) -> set[str]:
        store, prefix = self._store(lease)
        ordered = sorted(hashes)
        if store.kind == "filesystem":  # a stat each: threads would only queue for the GIL
            return {key[-64:] for key in store.absent([blob_key(prefix, h) for h in ordered])}
        limit = len(ordered) * LISTED_PER_ASKED
        if len(ordered) >= LIST_AFTER and stored is not None and stored <= limit:  # a cold push asks about every blob
            names = store.list_names(blob_key(prefix, "0" * 64)[:-64], limit=limit)
            if names is not None:
                return {h for h in ordered if blob_key(prefix, h) not in names}
        with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
            present = list(pool.map(lambda h: store.exists(blob_key(prefix, h)), ordered))
        return {h for h, ok in zip(ordered, present) if not ok}

    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        store, prefix = self._store(lease)
        store.get_file(blob_key(prefix, digest), local_path)

    def download_blob_hashed(self, lease: Lease, digest: str, local_path: str) -> str:
        store, prefix = self._store(lease)
        return store.get_file_sha256(blob_key(prefix, digest), local_path)

    def upload_blob(self, lease: Lease, digest: str, local_path: str, hashed_as: tuple | None = None) -> None:
        store, prefix = self._store(lease)
        # Verified as it streams (the file may change after it was hashed) and create-only: a blob
        # already there is never replaced, whoever holds the lease.
        batch = self._batches.get(lease.volume_id)
        if batch is not None:
            batch.put_file(blob_key(prefix, digest), local_path, sha256=digest, hashed_as=hashed_as)
        else:
            store.put_file(blob_key(prefix, digest), local_path, sha256=digest, create_only=True)
        crash_point("push.after_blob_upload")

    def commit(self, lease, parent, manifest, counts, job_id=None, message="") -> tuple[int, str]:
        base = self.read_manifest(lease) if parent == lease.generation else Manifest()
        return self.commit_changes([commits.Change(lease, parent, base, manifest, job_id, message, counts)])[0]

    def commit_many(self, prepared: list) -> list[tuple[int, str]]:
        return self.commit_changes([
            commits.Change(p.lease, p.lease.generation, p.base, p.manifest, p.job_id, p.message, p.counts)
            for p in prepared
        ])

    def commit_changes(self, changes: list[commits.Change]) -> list[tuple[int, str]]:
        """Every change through the one commit path (engine/commits.py), with this remote's stores."""
        return commits.commit_changes(changes, self._store, user_id=self.user_id)
