"""Job preparation against what other workers do at the same moment."""
from __future__ import annotations

from volumes.models import Job, Volume
from volumes.services import jobs as job_services


def test_a_job_uses_the_volume_that_another_worker_created_a_moment_before(workspace, cast, monkeypatch):
    real_create = job_services.volume_create

    def create_after_a_rival(ws, name, owner=None):
        real_create(ws, name, owner=cast["admin"])  # the other worker wins the race
        return real_create(ws, name, owner=owner)

    monkeypatch.setattr(job_services, "volume_create", create_after_a_rival)
    job = Job.objects.create(
        workspace=workspace, user=cast["member"], language="python",
        content="# volume: shared-counter data\ndef main():\n    return 1\n",
    )

    plans, _ = job_services.job_prepare(job)

    assert [plan.name for plan in plans] == ["shared-counter"]
    assert Volume.objects.filter(workspace=workspace, name="shared-counter").count() == 1


def _running_job(workspace, cast, heartbeat_seconds_ago: float) -> Job:
    from datetime import timedelta

    from django.db.models import DateTimeField, ExpressionWrapper, Value
    from django.db.models.functions import Now

    job = Job.objects.create(workspace=workspace, user=cast["owner"], language="python",
                             content="def main():\n    return 1\n", status=Job.Status.RUNNING)
    Job.objects.filter(pk=job.pk).update(
        started_at=Now(),
        heartbeat_at=ExpressionWrapper(Now() - Value(timedelta(seconds=heartbeat_seconds_ago)),
                                       output_field=DateTimeField()),
    )
    return job


def test_the_reaper_judges_heartbeats_by_the_database_clock(workspace, cast, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    alive = _running_job(workspace, cast, heartbeat_seconds_ago=1)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))  # this host's clock runs fast
    assert job_services.reap_lost_jobs(grace_seconds=60) == 0
    assert Job.objects.get(pk=alive.pk).status == Job.Status.RUNNING
    monkeypatch.setattr(timezone, "now", real_now)
    lost = _running_job(workspace, cast, heartbeat_seconds_ago=120)
    assert job_services.reap_lost_jobs(grace_seconds=60) == 1
    assert Job.objects.get(pk=lost.pk).status == Job.Status.FAILURE


def test_a_reaped_job_never_turns_back_into_a_success(workspace, cast):
    lost = _running_job(workspace, cast, heartbeat_seconds_ago=120)
    assert job_services.reap_lost_jobs(grace_seconds=60) == 1
    reporter = job_services.JobReporter(lost.pk)
    assert reporter.heartbeat() is True  # the late worker is told to stop
    reporter.status(Job.Status.RUNNING)
    reporter.finish(Job.Status.SUCCESS, result=1)
    lost.refresh_from_db()
    assert (lost.status, lost.result) == (Job.Status.FAILURE, None)
    assert "worker lost" in lost.error
