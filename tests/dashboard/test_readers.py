"""The volume page names the readers pinned next to the lease holder, and keeps doing so as it polls."""
from __future__ import annotations

import pytest

from volumes.engine import leases, pins
from volumes.models import Job
from volumes.services.jobs import job_submit

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def test_the_volume_page_shows_the_pinned_readers_next_to_the_lease_holder(as_user, workspace, volume, cast):
    job = job_submit(workspace, cast["reader"], "python", "def main(): pass\n", enqueue=False)
    Job.objects.filter(pk=job.pk).update(worker="celery-2")
    leases.try_acquire(volume.pk, "worker-x job 1")
    pin = pins.pin(volume.pk, f"celery-2 job {job.pk}", job_id=job.pk)
    pins.pin(volume.pk, "a script outside any job")
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert "In use by worker-x job 1" in page
    assert "2 readers pinned" in page and 'data-readers="2"' in page
    assert f'generation 0 · <a href="/w/{workspace.pk}/jobs/{job.pk}/">job {job.pk}</a> on celery-2' in page
    assert "generation 0 · a script outside any job" in page
    pins.release(pin)
    banner = as_user("owner").get(url(workspace, volume, "lease/"), **HTMX).content.decode()
    assert "1 reader pinned" in banner and f">job {job.pk}</a>" not in banner
