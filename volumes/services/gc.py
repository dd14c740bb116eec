"""Garbage collection: prune history past its retention and delete objects no kept generation uses.

GC takes the volume's lease, so it never races a push: a push holds the lease from its
first blob upload to its commit.
"""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from .. import conf
from ..engine import leases
from ..engine.manifest import Manifest
from ..models import Volume, VolumeCommit
from ..storage.factory import store_for_storage
from ..storage.keys import volume_prefix


def kept_commits(volume: Volume) -> list[VolumeCommit]:
    keep_n, keep_days = conf.get("HISTORY_KEEP_GENERATIONS"), conf.get("HISTORY_KEEP_DAYS")
    cutoff = timezone.now() - timedelta(days=keep_days)
    commits = list(VolumeCommit.objects.filter(volume=volume).order_by("-generation"))
    return [c for i, c in enumerate(commits) if i < keep_n or c.created_at >= cutoff or c.generation == volume.generation]


def gc_volume(volume: Volume, holder: str = "garbage collector") -> dict[str, int] | None:
    """Collect one volume; None if it is leased right now (try again later)."""
    lease = leases.try_acquire(volume.pk, holder)
    if lease is None:
        return None
    try:
        store = store_for_storage(volume.storage)
        prefix = volume_prefix(volume.workspace_id, volume.name)
        kept = kept_commits(volume)
        VolumeCommit.objects.filter(volume=volume).exclude(pk__in=[c.pk for c in kept]).delete()
        kept_manifests = {c.manifest_key for c in kept}
        referenced: set[str] = set()
        for key in kept_manifests:
            referenced |= Manifest.from_json(store.get_bytes(key)).hashes()
        removed = {"blobs": 0, "manifests": 0}
        for key in list(store.list(prefix)):
            rest = key[len(prefix):]
            if rest.startswith("blobs/") and rest[len("blobs/"):] not in referenced:
                store.delete(key)
                removed["blobs"] += 1
            elif rest.startswith("manifests/") and key not in kept_manifests:
                store.delete(key)
                removed["manifests"] += 1
        # Parts of uploads a killed push left behind: no listing shows them, but they take space.
        removed["incomplete uploads"] = store.abort_incomplete_uploads(prefix)
        return removed
    finally:
        leases.release(lease)


def gc_all() -> int:
    removed = 0
    for volume in Volume.objects.select_related("storage"):
        result = gc_volume(volume)
        if result:
            removed += sum(result.values())
    return removed
