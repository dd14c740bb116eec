"""Exclusive, expiring, fenced leases on volumes, kept on the Volume row.

Every state change is a conditional UPDATE judged by the database clock, so it is
correct with any number of workers on PostgreSQL and on SQLite alike. A holder
proves itself with its fencing token; a newer acquire always has a larger token.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Now

from .. import conf
from ..exceptions import LeaseLost, LeaseTimeout, NotFound
from ..models import Job, JobVolume, Volume
from . import history


@dataclass(frozen=True)
class Lease:
    volume_id: int
    workspace_id: str
    volume_name: str
    token: int
    holder: str
    generation: int
    manifest_key: str
    ttl: float
    # This process's monotonic clock when the request that got the lease was sent: the lease is
    # live until at least sent_at + ttl (0: unknown).
    sent_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class Holder:
    """Who holds a volume right now, for log lines and 409 answers."""

    holder: str
    job_id: int | None
    since: datetime | None
    expires_at: datetime | None
    waiting: int = 0  # other jobs queued for the lease, and readers pinned to a generation (see with_queue)
    readers: int = 0

    @property
    def label(self) -> str:
        """"job 3 on host:pid" for a worker's job (its holder reads "host:pid job 3"), else the holder."""
        suffix = f" job {self.job_id}"
        if self.job_id and self.holder.endswith(suffix):
            return f"job {self.job_id} on {self.holder.removesuffix(suffix)}"
        return f"{self.holder} (job {self.job_id})" if self.job_id else self.holder

    def describe(self) -> str:
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"{self.label}{since}"

    def queue_text(self) -> str:
        """'; 2 other jobs waiting for the lease; 1 reader pinned to a generation' ('' when neither)."""
        parts = [f"{self.waiting} other {'job' if self.waiting == 1 else 'jobs'} waiting for the lease"] * bool(
            self.waiting) + [f"{self.readers} {'reader' if self.readers == 1 else 'readers'} pinned to a generation"
                             ] * bool(self.readers)
        return "".join(f"; {part}" for part in parts)


def waiting_for_lease(**mount):
    """Jobs waiting for the lease of the volumes `mount` selects (JobVolume fields): a read-write mount not
    leased yet, of a job in the waiting state."""
    return Job.objects.filter(status=Job.Status.WAITING, mounts__mode=JobVolume.Mode.READ_WRITE,
                              mounts__lease_token__isnull=True, **{f"mounts__{k}": v for k, v in mount.items()})


def with_queue(holder: Holder | None, volume_id: int, job_id: int | None = None) -> Holder | None:
    """`holder` with the volume's queue counted (other than `job_id`): for a waiting job's log line."""
    if holder is None:
        return None
    from .pins import live

    waiting = waiting_for_lease(volume_id=volume_id).exclude(pk=job_id).values("pk").distinct().count()
    return replace(holder, waiting=waiting, readers=live(volume_id).count())


def _expiry(ttl: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + Value(timedelta(seconds=ttl)), output_field=DateTimeField())


def _free() -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now())


def current_holder(volume_id: int) -> Holder | None:
    row = (
        Volume.objects.filter(pk=volume_id, lease_expires_at__gt=Now())
        .values("lease_holder", "lease_job_id", "lease_acquired_at", "lease_expires_at")
        .first()
    )
    if row is None:
        return None
    return Holder(row["lease_holder"], row["lease_job_id"], row["lease_acquired_at"], row["lease_expires_at"])


def try_acquire(volume_id: int, holder: str, job_id: int | None = None, ttl: float | None = None) -> Lease | None:
    """Take the lease if it is free or expired; None if someone holds it."""
    ttl = ttl or conf.get("LEASE_TTL")
    with transaction.atomic():
        # A job's lease is a use of the volume, reading or writing: "last used" moves with it.
        used = {"last_used_at": Now(), "last_used_job_id": job_id} if job_id is not None else {}
        taken = (
            Volume.objects.filter(_free(), pk=volume_id)
            .update(
                lease_token=F("lease_token") + 1,
                lease_holder=holder[:200],
                lease_job_id=job_id,
                lease_acquired_at=Now(),
                lease_expires_at=_expiry(ttl),
                **used,
            )
        )
        if taken != 1:
            if not Volume.objects.filter(pk=volume_id).exists():
                raise NotFound("the volume was deleted; nothing to lease")
            return None
        row = Volume.objects.values("workspace_id", "name", "lease_token", "generation", "manifest_key").get(
            pk=volume_id
        )
    lease = Lease(
        volume_id, row["workspace_id"], row["name"], row["lease_token"], holder, row["generation"],
        row["manifest_key"], ttl,
    )
    history.record("acquire", lease, "ok")
    return lease


def acquire(
    volume_id: int,
    holder: str,
    job_id: int | None = None,
    ttl: float | None = None,
    wait: float | None = None,
    on_wait: Callable[[Holder | None], None] | None = None,
) -> Lease:
    """Take the lease, waiting up to `wait` seconds (VOLUMES_LEASE_WAIT_MAX by default)."""
    from ..ops.metrics import LEASE_WAIT

    wait = conf.get("LEASE_WAIT_MAX") if wait is None else wait
    started = time.monotonic()
    deadline = started + wait
    delay, last_report = 0.02, None
    while True:
        sent = time.monotonic()
        lease = try_acquire(volume_id, holder, job_id, ttl)
        if lease is not None:
            LEASE_WAIT.labels("acquired").observe(time.monotonic() - started)
            return replace(lease, sent_at=sent)
        held_by = current_holder(volume_id)
        now = time.monotonic()
        if now >= deadline:
            name = Volume.objects.filter(pk=volume_id).values_list("name", flat=True).first()
            who = held_by.describe() if held_by else "another job"
            LEASE_WAIT.labels("timeout").observe(now - started)
            raise LeaseTimeout(
                f"volume {name!r} is still held by {who} after waiting {wait:.0f}s; "
                "retry when that job has finished, or raise VOLUMES_LEASE_WAIT_MAX",
                holder=who,
            )
        if on_wait and (last_report is None or now - last_report >= 30):
            on_wait(with_queue(held_by, volume_id, job_id))
            last_report = now
        time.sleep(min(delay, max(deadline - now, 0)))
        delay = min(delay * 2, 0.5)


def renew(lease: Lease) -> None:
    """Extend the lease by its TTL; LeaseLost if it expired or another holder took it."""
    renewed = Volume.objects.filter(pk=lease.volume_id, lease_token=lease.token, lease_expires_at__gt=Now()).update(
        lease_expires_at=_expiry(lease.ttl)
    )
    if renewed != 1:
        history.record("renew", lease, "fail")
        raise LeaseLost(
            f"the lease on volume {lease.volume_name!r} was lost (expired or taken over); "
            "nothing more will be committed by this holder"
        )
    history.record("renew", lease, "ok")


def release(lease: Lease) -> bool:
    """Give the lease back; False if it was no longer ours (nothing is changed then)."""
    released = Volume.objects.filter(
        pk=lease.volume_id, lease_token=lease.token, lease_expires_at__isnull=False
    ).update(
        lease_expires_at=None, lease_holder="", lease_job=None, lease_acquired_at=None
    )
    history.record("release", lease, "ok" if released else "fail")
    return released == 1


def release_job(job_id: int) -> int:
    """Give back every lease a job holds, because the job finished; the number released."""
    rows = Volume.objects.filter(lease_job_id=job_id, lease_expires_at__isnull=False).values(
        "pk", "workspace_id", "name", "lease_token", "lease_holder", "generation", "manifest_key"
    )
    return sum(
        release(Lease(r["pk"], r["workspace_id"], r["name"], r["lease_token"], r["lease_holder"], r["generation"],
                      r["manifest_key"], conf.get("LEASE_TTL")))
        for r in rows
    )


def check_held(lease: Lease, job_id: int | None = None) -> None:
    """Raise LeaseLost unless `lease` is still the live lease of its volume (the fencing check), taken
    for job `job_id` when one is given (an agent's token must be its own job's)."""
    held = Volume.objects.filter(pk=lease.volume_id, lease_token=lease.token, lease_expires_at__gt=Now())
    if job_id is not None:
        held = held.filter(lease_job_id=job_id)
    if not held.exists():
        raise LeaseLost(f"the lease on volume {lease.volume_name!r} was lost; nothing was committed")
