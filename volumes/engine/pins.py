"""Pins: many readers next to one writer.

A read-only mount takes no lease. It pins the volume's committed generation (a VolumePin row that
expires by the database clock unless renewed, like a lease) and pulls exactly that generation,
which is immutable; GC (services/gc.py) keeps every manifest and blob of a generation with a live
pin. Nothing is ever committed under a pin.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now

from .. import conf
from ..exceptions import LeaseLost, NotFound
from ..models import Volume, VolumeCommit, VolumePin
from .leases import Lease, _expiry


@dataclass(frozen=True)
class Pin(Lease):
    """A Lease-shaped view of a pin, so pulls read it like a lease; token stays 0 (it fences nothing)."""

    pin_id: int = 0


def _kept(volume_id: int, generation: int) -> bool:
    """Whether GC still keeps `generation`: the current one, or one with its history row."""
    if generation == 0:
        return True
    return (Volume.objects.filter(pk=volume_id, generation=generation).exists()
            or VolumeCommit.objects.filter(volume_id=volume_id, generation=generation).exists())


def pin(volume_id: int, holder: str, job_id: int | None = None, ttl: float | None = None) -> Pin:
    """Pin the volume's committed generation for a reader; never waits for the lease."""
    ttl = ttl or conf.get("LEASE_TTL")
    while True:
        sent = time.monotonic()  # the pin is live until at least sent + ttl
        with transaction.atomic():
            row = Volume.objects.filter(pk=volume_id).values("workspace_id", "name", "generation",
                                                             "manifest_key").first()
            if row is None:
                raise NotFound("the volume was deleted; nothing to read")
            made = VolumePin.objects.create(
                volume_id=volume_id, generation=row["generation"], manifest_key=row["manifest_key"],
                holder=holder[:200], job_id=job_id, pinned_at=Now(), expires_at=_expiry(ttl),
            )
            if job_id is not None:  # a reader uses the volume too
                Volume.objects.filter(pk=volume_id).update(last_used_at=Now(), last_used_job_id=job_id)
        # GC reads pins again after it drops history rows (services/gc.py): a pin committed before that
        # read is kept; one committed after it finds its row gone here and pins the newer generation.
        if _kept(volume_id, row["generation"]):
            return Pin(volume_id, row["workspace_id"], row["name"], 0, holder, row["generation"],
                       row["manifest_key"], ttl, sent_at=sent, pin_id=made.pk)
        VolumePin.objects.filter(pk=made.pk).delete()


def renew(p: Pin) -> None:
    """Extend the pin by its TTL; LeaseLost once it expired (GC may have taken its objects then)."""
    if VolumePin.objects.filter(pk=p.pin_id, expires_at__gt=Now()).update(expires_at=_expiry(p.ttl)) != 1:
        raise LeaseLost(
            f"the pin on generation {p.generation} of volume {p.volume_name!r} expired; what was read may be "
            "incomplete, so the job stops"
        )


def release(p: Pin) -> bool:
    """Drop the pin; False if it was gone already."""
    return VolumePin.objects.filter(pk=p.pin_id).delete()[0] == 1


def release_job(job_id: int) -> int:
    """Drop every pin of a job, because it finished; the number dropped."""
    return VolumePin.objects.filter(job_id=job_id).delete()[0]


def live(volume_id: int):
    """The volume's pins that have not expired (by the database clock)."""
    return VolumePin.objects.filter(volume_id=volume_id, expires_at__gt=Now())


def pinned_manifests(volume_id: int) -> set[str]:
    """Manifest keys of the generations live pins hold."""
    return set(live(volume_id).exclude(manifest_key="").values_list("manifest_key", flat=True))


def drop_expired(volume_id: int) -> int:
    return VolumePin.objects.filter(Q(volume_id=volume_id), Q(expires_at__lte=Now())).delete()[0]
