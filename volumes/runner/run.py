"""Running one queued job in this process: the entry of the Celery task (volumes.tasks.run_job), of
`manage.py run_script` and of the benchmarks.

Claim the job (a conditional update: a redelivered task never runs it twice), prepare its mounts
through services.jobs, then execute it with the volume engine (runner/job.py), reporting to the
database as it goes. The services never import this module: they queue a job by the task's name.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import conf
from ..engine.cache import WorkerCache
from ..engine.remote import DirectRemote
from ..exceptions import VolumesError
from ..models import Job, ObjectStorage
from ..services.jobs import JobReporter, MountPlan, job_claim, job_prepare, worker_name
from .job import JobSpec, execute  # imported with the worker, not in the first job's time (the engine: 40 ms)


def job_run(job_id: int, echo=None) -> Job | None:
    """Claim and run one queued job in this process; None if it was not queued (any more)."""
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
        [_with_max_size(p, max_size) for p in plans], user=job.user.get_username(), hidden=filesystem_roots(),
    )
    cache = WorkerCache(conf.get("CACHE_DIR"), conf.get("CACHE_MAX_BYTES"))
    outcome = execute(spec, DirectRemote(user_id=job.user_id), cache, reporter, holder=f"{worker} job {job.pk}")
    reporter.finish(outcome.status, result=outcome.result, error=outcome.error)
    return Job.objects.get(pk=job.pk)


def filesystem_roots() -> tuple[str, ...]:
    """Every filesystem storage's root folder: an unsandboxed job must not read other workspaces' blobs there."""
    roots = ObjectStorage.objects.filter(kind=ObjectStorage.Kind.FILESYSTEM).values_list("config", flat=True)
    return tuple(sorted({config["root"] for config in roots if isinstance(config, dict) and config.get("root")}))


@dataclass(frozen=True)
class _PlanWithLimit(MountPlan):
    max_size: int | None = None


def _with_max_size(plan: MountPlan, max_size: int | None) -> MountPlan:
    return _PlanWithLimit(plan.name, plan.mount_path, plan.read_only, plan.line, max_size)
