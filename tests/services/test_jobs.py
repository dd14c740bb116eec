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
