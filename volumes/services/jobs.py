"""Writes for jobs: submit, prepare (annotations -> permitted mounts), claim, report, reap."""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Now
from django.utils import timezone

from .. import annotations, conf, permissions
from ..exceptions import Conflict, PermissionDenied, VolumesError
from ..models import Job, JobVolume, Volume, Workspace
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
    job = Job.objects.create(workspace=workspace, user=user, language=language, content=content, args=args or {})
    if enqueue:
        from ..tasks import run_job

        transaction.on_commit(lambda: run_job.delay(job.pk))
    return job


def job_prepare(job: Job) -> tuple[list[MountPlan], bool]:
    """Parse and resolve the annotations, check storage and permissions, create missing volumes.

    Returns (mount plans, sandbox). Raises a VolumesError before anything is leased."""
    parsed = annotations.parse(job.content, job.language)
    resolved = annotations.resolve(parsed, job.workspace_id, job.args or {})
    if not resolved:
        return [], parsed.sandbox
    workspace = job.workspace
    if workspace.volume_storage_id is None:
        raise storage_not_configured(workspace)
    if permissions.role(job.user, workspace) is None:
        raise PermissionDenied(f"user {job.user} is not a member of workspace {workspace.id!r}")
    plans = []
    for mount in resolved:
        volume = Volume.objects.filter(workspace=workspace, name__iexact=mount.name).first()
        if volume is None:
            try:
                volume = volume_create(workspace, mount.name, owner=job.user)
            except Conflict:
                # A job on another worker created it between our lookup and our create: use theirs.
                volume = Volume.objects.get(workspace=workspace, name__iexact=mount.name)
            except VolumesError as exc:
                raise type(exc)(f"line {mount.line}: cannot create volume {mount.name!r}: {exc}") from exc
        rights = permissions.access(job.user, volume)
        if not rights.can_see:
            raise PermissionDenied(
                f"line {mount.line}: user {job.user} has no access to volume {volume.name!r}; "
                "ask its owner or a workspace admin to share it"
            )
        plans.append(MountPlan(volume.name, mount.mount_path, not rights.can_write, mount.line))
        JobVolume.objects.update_or_create(
            job=job, volume_name=volume.name,
            defaults={"volume": volume, "mount_path": mount.mount_path,
                      "mode": JobVolume.Mode.READ_ONLY if not rights.can_write else JobVolume.Mode.READ_WRITE},
        )
    return plans, parsed.sandbox


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
            Job.objects.filter(pk=self.job_id).update(log=Concat(F("log"), Value(text)))
            self._last_flush = time.monotonic()

    def status(self, status: str) -> None:
        Job.objects.filter(pk=self.job_id).exclude(status__in=Job.FINISHED).update(status=status)

    def heartbeat(self) -> bool:
        """Record that the worker is alive; True if cancellation was requested."""
        Job.objects.filter(pk=self.job_id).update(heartbeat_at=Now())
        return Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()

    def mount_figures(self, volume_name: str, **figures) -> None:
        JobVolume.objects.filter(job_id=self.job_id, volume_name=volume_name).update(**figures)

    def script_started(self) -> None:
        Job.objects.filter(pk=self.job_id).update(script_started_at=Now())

    def script_finished(self) -> None:
        Job.objects.filter(pk=self.job_id).update(script_finished_at=Now())

    def finish(self, status: str, result=None, error: str = "") -> None:
        self.flush()
        Job.objects.filter(pk=self.job_id).update(status=status, result=result, error=error, finished_at=Now())


def reap_lost_jobs(grace_seconds: float | None = None) -> int:
    """Mark failed the jobs whose worker stopped sending heartbeats ("worker lost"); they never run again."""
    grace = grace_seconds if grace_seconds is not None else 3 * conf.get("LEASE_TTL")
    cutoff = timezone.now() - timezone.timedelta(seconds=grace)
    lost = Job.objects.filter(status__in=[Job.Status.RUNNING, Job.Status.WAITING]).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    return lost.update(
        status=Job.Status.FAILURE, finished_at=Now(),
        error="worker lost: the worker running this job stopped responding; its changes were not committed",
    )


def job_run(job_id: int, echo=None) -> Job | None:
    """Claim and run one queued job in this process (Celery task and run_script share this path)."""
    from ..engine.cache import WorkerCache
    from ..engine.remote import DirectRemote
    from ..runner.job import JobSpec, execute

    worker = worker_name()
    job = job_claim(job_id, worker)
    if job is None:
        return None
    reporter = JobReporter(job.pk, echo=echo)
    reporter.log(f"job {job.pk} started on {worker} as {job.user}")
    try:
        plans, sandbox = job_prepare(job)
    except VolumesError as exc:
        reporter.log(f"error: {exc}")
        reporter.finish(Job.Status.FAILURE, error=str(exc))
        return Job.objects.get(pk=job.pk)
    max_size = job.workspace.max_volume_size
    spec = JobSpec(
        job.pk, job.workspace_id, job.language, job.content, job.args or {}, sandbox,
        [_with_max_size(p, max_size) for p in plans],
    )
    cache = WorkerCache(conf.get("CACHE_DIR"), conf.get("CACHE_MAX_BYTES"))
    outcome = execute(spec, DirectRemote(user_id=job.user_id), cache, reporter, holder=f"{worker} job {job.pk}")
    reporter.finish(outcome.status, result=outcome.result, error=outcome.error)
    return Job.objects.get(pk=job.pk)


@dataclass(frozen=True)
class _PlanWithLimit(MountPlan):
    max_size: int | None = None


def _with_max_size(plan: MountPlan, max_size: int | None) -> MountPlan:
    return _PlanWithLimit(plan.name, plan.mount_path, plan.read_only, plan.line, max_size)
