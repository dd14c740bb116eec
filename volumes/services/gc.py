"""Garbage collection: prune history past its retention and delete objects no kept generation uses.

Kept: the generations retention keeps and every generation a reader has a live pin on (engine/pins.py),
whatever retention or `volume prune` says about its history row.

GC takes the volume's lease, so it never races a push: a push holds the lease from its first blob
upload to its commit. Time is untrusted, though: GC may be paused past its TTL at any instant. So

- what it keeps is read under the lease, and the lease is confirmed after reading it;
- it renews the lease before every delete batch and stops as soon as the lease is lost (a job may
  have committed a generation that uses an object GC planned to delete);
- within a batch it renews again once half the TTL has passed on its own monotonic clock since the
  last renewal, so no delete is sent on a lease that may have expired by its own reckoning;
- an unreferenced object is deleted only once it is older than VOLUMES_GC_GRACE (by the storage's
  last-modified time), so objects written by a push that raced a stale plan are never touched.

The window left: a pause that falls exactly between the last check and one delete request. Closing
it needs conditional deletes in storage (and pushes that refresh a reused blob); not done.
"""
from __future__ import annotations

import logging
import time

from django.utils import timezone

from .. import conf
from ..engine import leases, manifest_store, pins, retention
from ..engine.faults import crash_point
from ..engine.leases import Lease
from ..engine.manifest import Manifest
from ..exceptions import LeaseLost
from ..models import Volume, VolumeCommit
from ..ops.metrics import GC_DELETED
from ..storage.factory import store_for_volume
from .direct import INCOMING

logger = logging.getLogger(__name__)

DELETE_BATCH = 100  # objects deleted between two lease renewals


def kept_commits(volume: Volume, current_generation: int | None = None) -> list[VolumeCommit]:
    """The commits history keeps (engine/retention.py): the last N generations younger than D days."""
    current = volume.generation if current_generation is None else current_generation
    return retention.kept(list(VolumeCommit.objects.filter(volume=volume)), current, timezone.now())


class _LeaseClock:
    """Renews GC's lease and says how long deletes may go on before the next renewal."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.valid_until = 0.0

    def renew(self) -> None:
        started = time.monotonic()
        leases.renew(self.lease)  # LeaseLost if it expired or another holder took it
        self.valid_until = started + self.lease.ttl / 2

    def still_valid(self) -> bool:
        return time.monotonic() < self.valid_until


def gc_volume(volume: Volume, holder: str = "garbage collector") -> dict[str, int] | None:
    """Collect one volume; None if it is leased right now (try again later).

    Returns what was removed; {"stopped": 1, ...} when GC lost its lease midway and stopped."""
    lease = leases.try_acquire(volume.pk, holder)
    if lease is None:
        return None
    removed = {"blobs": 0, "manifests": 0, "incomplete uploads": 0}
    clock = _LeaseClock(lease)
    try:
        store, prefix = store_for_volume(volume)
        # The generation and manifest current under our lease (the Volume passed in may be stale).
        kept = kept_commits(volume, lease.generation)
        clock.renew()
        VolumeCommit.objects.filter(volume=volume).exclude(pk__in=[c.pk for c in kept]).delete()
        # Readers' pins, read after the history rows went: a pin made later found its row gone and
        # re-pinned the current generation (engine/pins.py), which we keep anyway.
        pins.drop_expired(volume.pk)
        kept_manifests = ({c.manifest_key for c in kept} | ({lease.manifest_key} if lease.manifest_key else set())
                          | pins.pinned_manifests(volume.pk))
        referenced: set[str] = set()
        parts: set[str] = set()
        for key in kept_manifests:
            if not clock.still_valid():
                clock.renew()  # reading many big manifests may take longer than the TTL
            # A damaged manifest too: keep every blob it names (a repair may still need one).
            referenced |= Manifest.referenced_hashes(manifest_store.read_bytes(store, key, salvage=True))
            parts |= manifest_store.part_keys(store, key)
        clock.renew()  # everything kept was read while the lease was ours

        grace = float(conf.get("GC_GRACE"))
        old_enough = time.time() - grace
        doomed: list[tuple[str, str]] = []
        for key, modified in store.list_with_times(prefix):
            if not clock.still_valid():
                clock.renew()  # a listing of millions of objects takes a while too
            rest = key[len(prefix):]
            if rest.startswith("blobs/") and rest[len("blobs/"):] not in referenced:
                kind = "blobs"
            elif rest.startswith(INCOMING):  # direct uploads no commit took (services/direct.py)
                kind = "blobs"
            elif rest.startswith("manifests/parts/"):
                if key in parts:
                    continue
                kind = "manifests"
            elif rest.startswith("manifests/") and key not in kept_manifests:
                kind = "manifests"
            else:
                continue
            if modified is None or modified <= old_enough:
                doomed.append((key, kind))
        crash_point("gc.before_delete")
        for start in range(0, len(doomed), DELETE_BATCH):
            clock.renew()
            for key, kind in doomed[start:start + DELETE_BATCH]:
                if not clock.still_valid():
                    clock.renew()
                store.delete(key)
                removed[kind] += 1
                GC_DELETED.labels(kind).inc()
        # Parts of uploads a killed push left behind: no listing shows them, but they take space.
        clock.renew()
        removed["incomplete uploads"] = store.abort_incomplete_uploads(prefix, older_than=old_enough)
        return removed
    except LeaseLost:
        logger.warning("GC of volume %s stopped: its lease was lost (paused past its TTL?); %s removed so far",
                       volume, removed)
        return {**removed, "stopped": 1}
    finally:
        leases.release(lease)


def gc_all() -> int:
    """Collect every live volume, then purge trashed volumes past VOLUMES_TRASH_DAYS."""
    from .volumes import trash_purge_expired

    removed = 0
    for volume in Volume.objects.select_related("storage"):
        result = gc_volume(volume)
        if result:
            removed += sum(v for k, v in result.items() if k != "stopped")
    return removed + trash_purge_expired()
