"""The engine's view of the server: leases, manifests, blobs and commits.

`DirectRemote` talks to the database and the object storage itself (web server,
Celery workers, management commands). `volumes.agent.HttpRemote` does the same
over the REST API for agent workers that hold no credentials.
"""
from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .. import conf
from ..exceptions import NotFound
from ..models import Volume
from ..storage.base import ObjectStore
from ..storage.factory import store_for_storage
from ..storage.keys import blob_key, manifest_key, volume_prefix
from . import commits, leases
from .commits import ChangeCounts
from .faults import crash_point
from .leases import Holder, Lease
from .manifest import Manifest


class Remote(ABC):
    def prepare(self, lease: Lease) -> None:
        """Called in the syncing thread before blobs move on worker threads."""

    def pull_threads(self, lease: Lease) -> int:
        return conf.get("TRANSFER_THREADS")

    @abstractmethod
    def acquire(
        self, workspace_id: str, volume_name: str, holder: str, job_id: int | None = None,
        wait: float | None = None, on_wait: Callable[[Holder | None], None] | None = None,
    ) -> Lease: ...

    @abstractmethod
    def renew(self, lease: Lease) -> None: ...

    @abstractmethod
    def release(self, lease: Lease) -> bool: ...

    @abstractmethod
    def read_manifest(self, lease: Lease) -> Manifest:
        """The manifest of the generation current when the lease was taken (empty at generation 0)."""

    @abstractmethod
    def missing_blobs(self, lease: Lease, hashes: set[str]) -> set[str]: ...

    @abstractmethod
    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None: ...

    @abstractmethod
    def upload_blob(self, lease: Lease, digest: str, local_path: str) -> None: ...

    @abstractmethod
    def commit(
        self, lease: Lease, parent: int, manifest: Manifest, counts: ChangeCounts,
        job_id: int | None = None, message: str = "",
    ) -> tuple[int, str]:
        """Write the manifest and move the volume to it under the fencing check.
        Returns (new generation, manifest key)."""


class DirectRemote(Remote):
    """Database + object storage in this process."""

    def __init__(self, user_id: int | None = None) -> None:
        self.user_id = user_id
        self._stores: dict[int, tuple[ObjectStore, str]] = {}

    def prepare(self, lease: Lease) -> None:
        # Resolve the storage here: transfer threads must not query the database (their own
        # connections would not see this thread's transaction, and would be left open).
        self._store(lease)

    def pull_threads(self, lease: Lease) -> int:
        # Pulling from a local disk is mostly small syscalls and Python per file: threads only queued
        # for the GIL (a cold pull of 10,000 files took 12 s with 8 threads, 3.8 s with one). Pushes
        # (hashing, bigger writes) still gain from threads; network stores overlap latency.
        store, _ = self._store(lease)
        return 1 if store.kind == "filesystem" else conf.get("TRANSFER_THREADS")

    def _store(self, lease: Lease) -> tuple[ObjectStore, str]:
        if lease.volume_id not in self._stores:
            volume = Volume.objects.select_related("storage").get(pk=lease.volume_id)
            self._stores[lease.volume_id] = (
                store_for_storage(volume.storage),
                volume_prefix(volume.workspace_id, volume.name),
            )
        return self._stores[lease.volume_id]

    def acquire(self, workspace_id, volume_name, holder, job_id=None, wait=None, on_wait=None) -> Lease:
        volume_id = (
            Volume.objects.filter(workspace_id=workspace_id, name__iexact=volume_name)
            .values_list("pk", flat=True)
            .first()
        )
        if volume_id is None:
            raise NotFound(f"volume {volume_name!r} does not exist in workspace {workspace_id!r}")
        return leases.acquire(volume_id, holder, job_id=job_id, wait=wait, on_wait=on_wait)

    def renew(self, lease: Lease) -> None:
        leases.renew(lease)

    def release(self, lease: Lease) -> bool:
        return leases.release(lease)

    def read_manifest(self, lease: Lease) -> Manifest:
        if not lease.manifest_key:
            return Manifest()
        store, _ = self._store(lease)
        return Manifest.from_json(store.get_bytes(lease.manifest_key))

    def missing_blobs(self, lease: Lease, hashes: set[str]) -> set[str]:
        store, prefix = self._store(lease)
        ordered = sorted(hashes)
        with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
            present = list(pool.map(lambda h: store.exists(blob_key(prefix, h)), ordered))
        return {h for h, ok in zip(ordered, present) if not ok}

    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        store, prefix = self._store(lease)
        store.get_file(blob_key(prefix, digest), local_path)

    def upload_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        store, prefix = self._store(lease)
        store.put_file(blob_key(prefix, digest), local_path)
        crash_point("push.after_blob_upload")

    def commit(self, lease, parent, manifest, counts, job_id=None, message="") -> tuple[int, str]:
        store, prefix = self._store(lease)
        leases.check_held(lease)
        key = manifest_key(prefix, f"{parent + 1:08d}-{uuid.uuid4().hex[:12]}.json")
        manifest.generation = parent + 1
        store.put_bytes(key, manifest.to_json())
        crash_point("push.after_manifest_write")
        generation = commits.commit_generation(
            lease, parent, key, manifest, counts, user_id=self.user_id, job_id=job_id, message=message
        )
        return generation, key
