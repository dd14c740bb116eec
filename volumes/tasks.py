"""Thin Celery tasks: take ids, call the runner (run_job) or services; nothing below imports this module
(services queue jobs through the dispatcher registered below).

Jobs go to the default queue (`celery`); the reaper and GC to their own queue `maintenance`
(CELERY_TASK_ROUTES), so a backlog of long jobs never delays them. Every worker consumes both
unless told otherwise (`-Q celery,maintenance`, as scripts/run.sh and the docs start it).
"""
from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown

from .runner.run import job_run
from .services import jobs


@worker_process_init.connect
def _report_heartbeats(**_kwargs) -> None:
    """Each process that runs jobs (prefork child or solo worker) reports itself for the Workers page."""
    from .services.workers import start_heartbeat_thread

    start_heartbeat_thread(jobs.worker_name())


@worker_process_shutdown.connect
def _stopped(**_kwargs) -> None:
    from .services.workers import worker_gone

    try:
        worker_gone(jobs.worker_name())
    except Exception:  # noqa: BLE001 - the database may be gone already; the page then shows it silent
        pass


@shared_task(acks_late=True, ignore_result=True)
def run_job(job_id: int) -> None:
    # job_run claims the job with a conditional update, so a redelivered task never runs it twice.
    job_run(job_id)


# Looked up at call time, so tests that replace run_job.delay are heard.
jobs.set_job_dispatcher(lambda job_id: run_job.delay(job_id))


@shared_task(ignore_result=True)
def reap_lost_jobs() -> int:
    return jobs.reap_lost_jobs()


@shared_task(ignore_result=True)
def collect_garbage() -> int:
    from .services.gc import gc_all

    return gc_all()
