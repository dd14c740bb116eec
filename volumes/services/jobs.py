"""Writes for jobs: submit, prepare (annotations -> permitted mounts), claim, report, reap. Running a
claimed job is the runner's (runner/run.py)."""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Now
from django.utils import timezone

from .. import annotations, conf, permissions
from ..engine import pins
from ..exceptions import Conflict, PermissionDenied, VolumeInTrash, VolumesError
from ..models import Job, JobVolume, Volume, Workspace
from ..utf8 import char_end, char_start
from .volumes import storage_not_configured, volume_create


@dataclass(frozen=True)
class MountPlan:
    """One volume a job will mount, decided before anything is leased or downloaded."""

    name: str
    mount_path: str
    read_only: bool
    line: int


def worker_name() -> str:
    return conf.get("WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def job_submit(workspace: Workspace, user, language: str, content: str, args: dict | None = None,
               enqueue: bool = True) -> Job:
    """Create a queued job; the Celery task is sent once the row is committed."""
    if language not in Job.Language.values:
        raise VolumesError(f"unknown language {language!r}; use one of {', '.join(Job.Language.values)}")
    if args is not None and not isinstance(args, dict):
        raise VolumesError("job arguments must be a JSON object, e.g. {\"env\": \"prod\"}")
    from .. import jsonsafe

    if args and jsonsafe.problem(args):
        raise VolumesError(f"these job arguments cannot be used: {jsonsafe.problem(args)}")
    if "\x00" in content:
        raise VolumesError("the script contains a NUL character")
    job = Job.objects.create(workspace=workspace, user=user, language=language, content=content, args=args or {})
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(job.pk))
    return job


_dispatch: Callable[[int], None] | None = None


def set_job_dispatcher(dispatch: Callable[[int], None]) -> None:
    """How queued jobs reach a worker: volumes.tasks registers its Celery task here when it is imported
    (AppConfig.ready imports it), so services never import the tasks (tasks -> runner -> services)."""
    global _dispatch
    _dispatch = dispatch


def job_enqueue(job_id: int) -> None:
    """Send a committed queued job to a worker."""
    if _dispatch is None:
        raise RuntimeError("no job dispatcher is registered: add 'volumes' to INSTALLED_APPS (its AppConfig "
                           "imports volumes.tasks, which registers one) or call set_job_dispatcher")
    _dispatch(job_id)


def job_prepare(job: Job) -> tuple[list[MountPlan], bool]:
    """Parse and resolve the annotations, check storage and permissions, create missing volumes.

    Returns (mount plans, sandbox). Raises a VolumesError before anything is leased."""
    workspace = job.workspace
    permissions.require_member(job.user, workspace)  # removed after submitting: the job never runs
    parsed = annotations.parse(job.content, job.language)
    resolved = annotations.resolve(parsed, job.workspace_id, job.args or {})
    sandbox = parsed.sandbox or bool(conf.get("SANDBOX_ALL"))  # the server's setting binds agents too
    if not resolved:
        return [], sandbox
    if workspace.volume_storage_id is None:
        raise storage_not_configured(workspace)
    plans = []
    for mount in resolved:
        volume = Volume.objects.named(workspace, mount.name).first()
        if volume is None:
            try:
                volume = volume_create(workspace, mount.name, owner=job.user)
            except VolumeInTrash as exc:
                # The name stays reserved while its volume is in the trash: never a new empty volume in its place.
                raise VolumeInTrash(f"line {mount.line}: {exc}") from exc
            except Conflict:
                # A job on another worker created it between our lookup and our create: use theirs.
                volume = Volume.objects.named(workspace, mount.name).get()
            except VolumesError as exc:
                raise type(exc)(f"line {mount.line}: cannot create volume {mount.name!r}: {exc}") from exc
        try:
            rights = permissions.require_share(job.user, volume)
        except PermissionDenied as exc:
            raise PermissionDenied(f"line {mount.line}: {exc}") from exc
        # Read-only by the user's access or by the script's `(read-only)`: the job pins, never leases.
        read_only = mount.read_only or not rights.can_write
        plans.append(MountPlan(volume.name, mount.mount_path, read_only, mount.line))
        JobVolume.objects.update_or_create(
            job=job, volume_name=volume.name,
            defaults={"volume": volume, "mount_path": mount.mount_path,
                      "mode": JobVolume.Mode.READ_ONLY if read_only else JobVolume.Mode.READ_WRITE},
        )
    return plans, sandbox


def job_claim(job_id: int, worker: str) -> Job | None:
    """Move a queued job to running for this worker; None if another worker has it or it is done."""
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, cancel_requested=False).update(
        status=Job.Status.RUNNING, worker=worker[:200], started_at=Now(), heartbeat_at=Now()
    )
    if not claimed:
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, cancel_requested=True).update(
            status=Job.Status.CANCELLED, finished_at=Now(), error="cancelled before it started"
        )
        return None
    return Job.objects.select_related("workspace", "user").get(pk=job_id)


def job_cancel(job: Job) -> None:
    """Ask for cancellation: a queued job never starts; a running one is stopped by its worker."""
    Job.objects.filter(pk=job.pk).exclude(status__in=Job.FINISHED).update(cancel_requested=True)
    Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=Now(), error="cancelled before it started"
    )


class JobReporter:
    """Writes a running job's log, status and figures to the database (buffered log lines)."""

    FLUSH_SECONDS = 0.3

    def __init__(self, job_id: int, echo=None) -> None:
        self.job_id = job_id
        self.echo = echo
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()  # the lease renewer thread flushes while the job logs

    def log(self, line: str) -> None:
        stamped = f"[{timezone.now():%H:%M:%S}] {line}"
        if self.echo:
            self.echo(stamped)
        with self._lock:
            self._buffer.append(stamped + "\n")
        if time.monotonic() - self._last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._buffer:
                return
            text, self._buffer = "".join(self._buffer), []
            job_log_append(self.job_id, text)
            self._last_flush = time.monotonic()

    def status(self, status: str) -> None:
        Job.objects.filter(pk=self.job_id).exclude(status__in=Job.FINISHED).update(status=status)

    def heartbeat(self) -> bool:
        """Record that the worker is alive; True if cancellation was requested."""
        Job.objects.filter(pk=self.job_id).update(heartbeat_at=Now())
        # A job finished meanwhile (reaped as lost, cancelled) must stop too.
        return Job.objects.filter(Q(cancel_requested=True) | Q(status__in=Job.FINISHED), pk=self.job_id).exists()

    def mount_figures(self, volume_name: str, **figures) -> None:
        JobVolume.objects.filter(job_id=self.job_id, volume_name=volume_name).update(**figures)

    def script_started(self) -> None:
        Job.objects.filter(pk=self.job_id).update(script_started_at=Now())

    def script_finished(self) -> None:
        Job.objects.filter(pk=self.job_id).update(script_finished_at=Now())

    def finish(self, status: str, result=None, error: str = "") -> None:
        from ..engine.leases import release_job

        self.flush()
        # The first outcome stands: a job reaped as lost never turns into a success when its worker wakes up.
        finished = Job.objects.filter(pk=self.job_id).exclude(status__in=Job.FINISHED).update(
            status=status, result=result, error=error, finished_at=Now()
        )
        release_job(self.job_id)  # normally released already; a finished job never keeps a volume
        pins.release_job(self.job_id)
        if finished:
            job_outcome_observed(self.job_id, status)


def job_outcome_observed(job_id: int, outcome: str) -> None:
    """Count a finished job and its duration in the metrics (outcome: a finished status, or "lost")."""
    from ..ops.metrics import observe_job

    times = Job.objects.filter(pk=job_id).values_list("started_at", "finished_at").first()
    seconds = (times[1] - times[0]).total_seconds() if times and times[0] and times[1] else None
    observe_job(str(outcome), seconds)


# Logs --------------------------------------------------------------------------------------------
# A job's log is a series of JobLogChunk rows, each at its byte offset in everything the job logged.
# An append inserts rows (never rewrites earlier ones): the first half of JOB_LOG_MAX_BYTES is kept
# as the head, and only the last half as the tail, so the oldest tail rows are deleted (and one row
# trimmed) as the log grows. A gap between kept rows is shown as a note of the bytes cut.



def _log_halves() -> tuple[int, int]:
    cap = max(int(conf.get("JOB_LOG_MAX_BYTES")), 1024)
    return cap // 2, cap - cap // 2


def job_log_append(job_id: int, text: str) -> None:
    """Append to a job's log, keeping its head and tail within VOLUMES_JOB_LOG_MAX_BYTES."""
    from ..models import JobLogChunk

    if not text:
        return
    # PostgreSQL text cannot hold NUL, nor UTF-8 hold lone surrogates.
    data = text.replace("\x00", "\ufffd").encode("utf-8", "replace")
    head_max, tail_max = _log_halves()
    with transaction.atomic():
        # Lock the job row (without changing it) so appends of one job happen one at a time.
        if not Job.objects.select_for_update().filter(pk=job_id).values_list("pk", flat=True):
            return
        chunks = JobLogChunk.objects.filter(job_id=job_id)
        last = chunks.order_by("-offset").values_list("offset", "size").first()
        total = last[0] + last[1] if last else 0
        rows = []
        if total < head_max:  # the head: kept whole, up to its half
            k = char_end(data, min(len(data), head_max - total))
            if k:
                rows.append(JobLogChunk(job_id=job_id, offset=total, size=k, text=data[:k].decode()))
            data, total = data[k:], total + k
        if data:  # the tail: at most its half, the newest bytes
            k = char_start(data, max(0, len(data) - tail_max))
            if k < len(data):
                rows.append(JobLogChunk(job_id=job_id, offset=total + k, size=len(data) - k, text=data[k:].decode()))
            total += len(data)
        JobLogChunk.objects.bulk_create(rows)
        boundary = total - tail_max  # tail bytes before this are cut
        if boundary <= 0:
            return
        tail = chunks.annotate(end=F("offset") + F("size")).filter(end__gt=head_max)
        tail.filter(end__lte=boundary).delete()
        straddler = tail.filter(offset__lt=boundary, end__gt=boundary).first()
        if straddler is not None:
            raw = straddler.text.encode()
            k = char_start(raw, boundary - straddler.offset)
            straddler.text, straddler.offset, straddler.size = raw[k:].decode(), straddler.offset + k, len(raw) - k
            if straddler.size:
                straddler.save(update_fields=["text", "offset", "size"])
            else:
                straddler.delete()


def reap_interval(ttl: float | None = None) -> float:
    """How often beat runs the reaper: a sixth of the lease TTL (10 s for 60 s)."""
    return float(conf.get("LEASE_TTL") if ttl is None else ttl) / 6


def reap_grace() -> float:
    """Seconds without a heartbeat after which a job's worker counts as lost: two thirds of the TTL.

    With the reaper every TTL/6, a lost job is marked failed within 5/6 of a TTL of its last
    heartbeat (plus the task's start). Workers send a heartbeat every LEASE_RENEW_INTERVAL, at most
    TTL/2 (check volumes.E002), so a live worker has missed more than one before it counts as lost."""
    ttl = float(conf.get("LEASE_TTL"))
    return ttl - 2 * reap_interval(ttl)


def reap_lost_jobs(grace_seconds: float | None = None) -> int:
    """Mark failed the jobs whose worker stopped sending heartbeats ("worker lost"); they never run again.
    Each such job's log gets a line saying so."""
    grace = grace_seconds if grace_seconds is not None else reap_grace()
    # Judged by the database clock, like the heartbeats it compares with (never this host's clock).
    cutoff = ExpressionWrapper(Now() - Value(timezone.timedelta(seconds=grace)), output_field=DateTimeField())
    lost = Job.objects.filter(status__in=[Job.Status.RUNNING, Job.Status.WAITING]).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    from ..engine.leases import release_job

    reaped = 0
    for job_id, worker, heartbeat_at, started_at in lost.values_list("pk", "worker", "heartbeat_at", "started_at"):
        # One conditional update per job (rare), so only a job still lost now loses its leases.
        if lost.filter(pk=job_id).update(
            status=Job.Status.FAILURE, finished_at=Now(),
            error="worker lost: the worker running this job stopped responding; its changes were not committed",
        ):
            release_job(job_id)  # a finished job holds nothing: its volumes are free at once
            pins.release_job(job_id)
            last = heartbeat_at or started_at
            since = f"since {last:%Y-%m-%d %H:%M:%S} UTC ({(timezone.now() - last).total_seconds():.0f} s)" \
                if last else "at all"
            job_log_append(job_id, f"error: worker lost: no heartbeat from {worker or 'its worker'} {since}; the job "
                                   "is marked failed, its changes were not committed and its volumes are free\n")
            job_outcome_observed(job_id, "lost")
            reaped += 1
    return reaped

