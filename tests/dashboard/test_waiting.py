"""Who is waiting: the volume page and the volumes table show the jobs queued for a volume's lease
and the readers pinned to it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from volumes.models import Job, JobVolume, VolumePin
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db


def job(workspace, user, status, volume, mode="rw", token=None) -> Job:
    made = Job.objects.create(workspace=workspace, user=user, language="python", content="x", status=status)
    JobVolume.objects.create(job=made, volume=volume, volume_name=volume.name, mount_path="data", mode=mode,
                             lease_token=token)
    return made


def test_jobs_waiting_for_the_lease_and_pinned_readers_are_shown(as_user, workspace, cast):
    models, other = (volume_create(workspace, name, owner=cast["owner"]) for name in ("models", "scratch"))
    owner = cast["owner"]
    first = job(workspace, owner, Job.Status.WAITING, models)
    second = job(workspace, owner, Job.Status.WAITING, models)
    job(workspace, owner, Job.Status.WAITING, models, token=7)  # holds this lease, waits for another volume
    job(workspace, owner, Job.Status.RUNNING, models)
    job(workspace, owner, Job.Status.WAITING, models, mode="ro")  # readers never wait for the lease
    job(workspace, owner, Job.Status.WAITING, other)
    now = timezone.now()
    VolumePin.objects.create(volume=models, generation=0, holder="w1", pinned_at=now, expires_at=now + timedelta(60))
    VolumePin.objects.create(volume=other, generation=0, holder="w2", pinned_at=now, expires_at=now - timedelta(1))

    banner = as_user("owner").get(f"/w/{workspace.pk}/volumes/models/lease/", HTTP_HX_REQUEST="true")
    text = banner.content.decode()
    assert 'data-waiting="2"' in text and "2 jobs waiting for the lease" in text
    assert f"/jobs/{first.pk}/" in text and f"/jobs/{second.pk}/" in text
    assert 'data-readers="1"' in text

    table = as_user("owner").get(f"/w/{workspace.pk}/assets/volumes/").content.decode()
    row = table[table.index(f'id="lease-{models.pk}"'):]
    row = row[:row.index("</span></span>") + 14]
    assert "2 waiting" in row and "1 reading" in row
    row = table[table.index(f'id="lease-{other.pk}"'):]
    row = row[:row.index("</span></span>") + 14]
    assert "1 waiting" in row and "reading" not in row  # its pin expired
