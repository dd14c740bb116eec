"""Snapshot readers on real Celery workers: read-only mounts pin a committed generation instead of
taking the lease, run next to the writer, and always see one whole generation."""
from __future__ import annotations

import os
import signal
import time

import pytest
from django.db.models.functions import Now

from volumes.engine import sync
from volumes.models import Job, JobVolume, Volume, VolumePin
from volumes.permissions import set_share
from volumes.services import gc
from volumes.services.jobs import job_submit, reap_lost_jobs
from volumes.services.volumes import volume_prune_history
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

from ..engine.helpers import checkout, commit
from .test_celery_workers import start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FILES = ("a.txt", "b.txt", "c.txt")
READER = """# volume: training-data models{mode}
import os

def main():
    return {{name: open(os.path.join("models", name)).read() for name in sorted(os.listdir("models"))}}
"""


def write_generation(label: str):
    def mutate(tree):
        for name in FILES:
            (tree / name).write_text(f"{label} {name}")
    return mutate


def generation(label: str) -> dict[str, str]:
    return {name: f"{label} {name}" for name in FILES}


def finished(*jobs) -> bool:
    return Job.objects.filter(pk__in=[j.pk for j in jobs], status__in=Job.FINISHED).count() == len(jobs)


def paused(proc) -> bool:
    """The worker stopped itself at VOLUMES_PAUSE_AT (state T in /proc)."""
    with open(f"/proc/{proc.pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0] == "T"


def writer_commits(volume, root, label: str) -> None:
    """A writer takes the lease (failing fast if a reader held it, as before pins) and commits."""
    remote, lease, cached, base, _ = checkout(volume, root, holder="writer", wait=5)
    try:
        write_generation(label)(cached.tree)
        sync.push(remote, lease, cached, base)
    finally:
        remote.release(lease)


@pytest.fixture
def model_volume(volume, cast, tmp_path, settings):
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0}
    commit(volume, tmp_path / "seed", write_generation("first"))
    set_share(volume, cast["reader"], "read")
    return volume


def test_two_read_only_jobs_finish_while_a_writer_holds_the_lease_and_read_the_generation_before_it(
        workspace, cast, model_volume, tmp_path):
    remote, lease, cached, base, _ = checkout(model_volume, tmp_path / "writer", holder="writer")
    workers = [start_worker(tmp_path, f"r{i}") for i in range(2)]
    try:
        shared = job_submit(workspace, cast["reader"], "python", READER.format(mode=""))  # a read share
        asked = job_submit(workspace, cast["owner"], "python", READER.format(mode=" (read-only)"))  # may write
        wait_for(lambda: finished(shared, asked), 120, "both readers")
        # Only now does the writer change the volume: the readers never waited for it.
        write_generation("second")(cached.tree)
        sync.push(remote, lease, cached, base)
    finally:
        remote.release(lease)
        for proc in workers:
            stop(proc)
    for job in (shared, asked):
        job = Job.objects.get(pk=job.pk)
        assert (job.status, job.result) == ("success", generation("first")), job.log
        assert "pinned generation 1 of training-data (read-only, no lease)" in job.log
        assert "waiting for volume" not in job.log
        mount = JobVolume.objects.get(job=job)
        assert (mount.mode, mount.base_generation, mount.lease_token) == ("ro", 1, None)
    volume = Volume.objects.get(pk=model_volume.pk)
    assert volume.generation == 2 and volume.lease_token == lease.token  # the writer's lease was never taken
    assert not VolumePin.objects.exists()  # released at the end


def test_a_reader_never_sees_a_partial_or_later_generation_when_the_writer_commits_and_gc_runs_during_its_pull(
        workspace, cast, model_volume, tmp_path):
    reader = start_worker(tmp_path, "reader", VOLUMES_PAUSE_AT="pull.after_file:1")
    try:
        job = job_submit(workspace, cast["reader"], "python", READER.format(mode=""))
        wait_for(lambda: paused(reader), 60, "the reader to pause after its first file")
        writer_commits(model_volume, tmp_path / "writer", "second")
        assert volume_prune_history(Volume.objects.get(pk=model_volume.pk), keep=1) == 1
        removed = gc.gc_volume(Volume.objects.get(pk=model_volume.pk))
        assert removed["blobs"] == 0, removed  # the pin keeps generation 1 whole
        os.kill(reader.pid, signal.SIGCONT)
        wait_for(lambda: finished(job), 60, "the reader")
    finally:
        stop(reader)
    job = Job.objects.get(pk=job.pk)
    assert (job.status, job.result) == ("success", generation("first")), job.log
    assert Volume.objects.get(pk=model_volume.pk).generation == 2


def test_the_pin_of_a_killed_reader_protects_its_blobs_no_more_once_it_expired(
        workspace, cast, model_volume, tmp_path):
    remote, lease, _, first, _ = checkout(model_volume, tmp_path / "look")
    remote.release(lease)
    reader = start_worker(tmp_path, "reader", VOLUMES_PAUSE_AT="pull.after_file:1",
                          VOLUMES_LEASE_TTL=2, VOLUMES_LEASE_RENEW_INTERVAL=0.5)
    try:
        job = job_submit(workspace, cast["reader"], "python", READER.format(mode=""))
        wait_for(lambda: paused(reader), 60, "the reader to pause mid-pull")
        assert VolumePin.objects.filter(job=job, generation=1).exists()
    finally:
        stop(reader)  # SIGKILL: nothing is released
    writer_commits(model_volume, tmp_path / "writer", "second")
    volume_prune_history(Volume.objects.get(pk=model_volume.pk), keep=1)
    wait_for(lambda: not VolumePin.objects.filter(expires_at__gt=Now()).exists(), 30, "the pin to expire")
    assert gc.gc_volume(Volume.objects.get(pk=model_volume.pk))["blobs"] == len(FILES)
    store = store_for_storage(model_volume.storage)
    prefix = volume_prefix(model_volume.workspace_id, model_volume.name)
    assert not any(store.exists(blob_key(prefix, e.hash)) for e in first.files)
    assert reap_lost_jobs(grace_seconds=0) == 1
    assert Job.objects.get(pk=job.pk).status == "failure" and not VolumePin.objects.exists()


def test_a_reader_on_the_writers_worker_reads_its_own_snapshot_and_leaves_the_writers_cache_alone(
        workspace, cast, model_volume, tmp_path, settings):
    from volumes.engine.cache import WorkerCache
    from volumes.runner.run import job_run

    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": tmp_path / "worker", "CACHE_LOCK_WAIT": 600,
                        "LEASE_WAIT_MAX": 5}  # before pins: a lease timeout, not a hang
    remote, lease, cached, base, _ = checkout(model_volume, tmp_path / "worker", holder="writer")
    shared = WorkerCache(tmp_path / "worker", 10**12).volume(model_volume.workspace_id, model_volume.name)
    try:
        with shared.in_use():  # the writer's job has the volume's cache of this worker, half-way through
            (cached.tree / "a.txt").write_text("half-written by the writer")
            job = job_run(job_submit(workspace, cast["owner"], "python", READER.format(mode=" (read-only)"),
                                     enqueue=False).pk)
            assert (cached.tree / "a.txt").read_text() == "half-written by the writer"
    finally:
        remote.release(lease)
    assert (job.status, job.result) == ("success", generation("first")), job.log
    assert "private copy" not in job.log  # never waited for the writer's cache: it never asked for it
    assert "filled this worker's read-only snapshot of generation 1" in job.log  # not seeded from the held cache
