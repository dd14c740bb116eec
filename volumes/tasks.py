"""Thin Celery tasks: take ids, call services."""
from celery import shared_task

from .services import jobs


@shared_task(acks_late=True, ignore_result=True)
def run_job(job_id: int) -> None:
    # job_run claims the job with a conditional update, so a redelivered task never runs it twice.
    jobs.job_run(job_id)


@shared_task(ignore_result=True)
def reap_lost_jobs() -> int:
    return jobs.reap_lost_jobs()


@shared_task(ignore_result=True)
def collect_garbage() -> int:
    from .services.gc import gc_all

    return gc_all()
