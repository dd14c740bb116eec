"""Readers start warm: a read-only mount the kernel makes read-only (the sandbox; a job user of its own on a root
worker) reads the worker's shared snapshot of its pinned generation, filled once (from the worker's warm cache
where it can) and reused by every later reader of that generation on that worker; elsewhere a private copy."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from volumes.engine.cache import SNAPSHOTS, WorkerCache
from volumes.models import Job, JobVolume, Volume
from volumes.permissions import set_share
from volumes.runner import identity
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit
from volumes.storage.factory import store_for_volume
from volumes.storage.keys import blob_key

from ..engine.helpers import ROOT, commit, worker_env
from .test_celery_workers import stop, wait_for
from .test_readers_pin_a_generation import FILES, generation, write_generation

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(os.geteuid() != 0, reason="job users, idmapped mounts and nsjail need a root worker")]

READER = """{sandbox}# volume: training-data models{mode}
import os

def main():
    return {{name: open(os.path.join("models", name)).read() for name in sorted(os.listdir("models"))}}
"""
WRITES = """{sandbox}# volume: training-data models (read-only)
def main():
    open("models/a.txt", "w").write("changed by a reader")
"""


@pytest.fixture
def model_volume(volume, cast, tmp_path, settings, cache_root):
    """Generation 1 committed from elsewhere: this worker's cache (cache_root) is cold."""
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    commit(volume, tmp_path / "elsewhere", write_generation("first"))
    set_share(volume, cast["reader"], "read")
    return volume


def read(workspace, user, sandbox=False, mode="", script=READER):
    job = job_run(job_submit(workspace, user, "python", script.format(sandbox="# sandbox\n" * sandbox, mode=mode),
                             enqueue=False).pk)
    return job, JobVolume.objects.get(job=job)


def delete_blobs(volume) -> None:
    """Storage loses every blob: only a reader that downloads nothing can still start."""
    store, prefix = store_for_volume(Volume.objects.get(pk=volume.pk))
    from volumes.engine.remote import DirectRemote

    remote = DirectRemote()
    pin = remote.pin(volume.workspace_id, volume.name, "look")
    try:
        for entry in remote.read_manifest(pin).files:
            store.delete(blob_key(prefix, entry.hash))
    finally:
        remote.release_pin(pin)


def snapshots(cache_root) -> list[str]:
    return sorted(s.name for s in WorkerCache(cache_root, 0).snapshots() if s.volume.root.is_dir())


@pytest.mark.parametrize("sandbox", [False, True])
def test_a_second_reader_of_the_generation_downloads_nothing(workspace, cast, model_volume, cache_root, sandbox):
    first, mount = read(workspace, cast["reader"], sandbox)
    assert (first.status, first.result) == ("success", generation("first")), first.log
    assert (mount.files_pulled, mount.bytes_pulled) == (3, len("first a.txt") * 3)
    assert "filled this worker's read-only snapshot of generation 1" in first.log
    delete_blobs(model_volume)
    second, mount = read(workspace, cast["owner"], sandbox, mode=" (read-only)")
    assert (second.status, second.result) == ("success", generation("first")), second.log
    assert (mount.files_pulled, mount.bytes_pulled, mount.files_skipped) == (0, 0, 3)
    assert "this worker's read-only snapshot of generation 1 (shared with its other readers)" in second.log
    assert len(snapshots(cache_root)) == 1
    assert not (cache_root / ".private").exists()  # no private copy made


def test_the_first_reader_fills_the_snapshot_from_the_workers_warm_cache(workspace, cast, model_volume):
    writer = job_run(job_submit(workspace, cast["owner"], "python",
                                "# volume: training-data models\ndef main():\n"
                                "    open('models/a.txt', 'w').write('second a.txt')\n", enqueue=False).pk)
    assert writer.status == "success", writer.log
    delete_blobs(model_volume)  # the warm cache holds generation 2 whole
    job, mount = read(workspace, cast["reader"])
    assert (job.status, job.result) == ("success", {**generation("first"), "a.txt": "second a.txt"}), job.log
    assert (mount.files_pulled, mount.files_skipped) == (0, 3)
    assert "3 files copied on this worker" in job.log


@pytest.mark.parametrize("sandbox", [False, True])
def test_a_reader_cannot_change_the_snapshot_the_next_reader_gets(workspace, cast, model_volume, cache_root, sandbox):
    read(workspace, cast["reader"], sandbox)
    writes, _ = read(workspace, cast["owner"], sandbox, script=WRITES)
    assert writes.status == "failure" and "[Errno 30] Read-only file system" in writes.error, writes.log
    delete_blobs(model_volume)
    job, mount = read(workspace, cast["reader"], sandbox)
    assert (job.status, job.result, mount.files_pulled) == ("success", generation("first"), 0), job.log


def test_a_new_generation_gets_a_new_snapshot_and_the_old_one_goes(workspace, cast, model_volume, cache_root,
                                                                   tmp_path):
    read(workspace, cast["reader"])
    [old] = snapshots(cache_root)
    commit(model_volume, tmp_path / "elsewhere", lambda tree: (tree / "b.txt").write_text("second b.txt"))
    job, mount = read(workspace, cast["reader"])
    assert job.result == {**generation("first"), "b.txt": "second b.txt"}, job.log
    assert (mount.base_generation, mount.files_pulled, mount.files_skipped) == (2, 1, 2)  # 2 copied from the old one
    [new] = snapshots(cache_root)  # the superseded one was removed when the job ended (eviction)
    assert new != old and new.startswith("g2-")


def test_without_a_read_only_mount_a_reader_gets_a_private_copy(workspace, cast, model_volume, cache_root,
                                                                 monkeypatch):
    monkeypatch.setattr(identity, "_isolation", False)  # root without CAP_SYS_ADMIN: symlinks, job runs as worker
    for _ in range(2):
        job, mount = read(workspace, cast["reader"])
        assert (job.status, job.result, mount.files_pulled) == ("success", generation("first"), 3), job.log
        assert "a private copy (this worker cannot mount it read-only" in job.log
    assert not (cache_root / SNAPSHOTS).exists()


def test_with_idmapped_mounts_off_a_reader_gets_a_private_copy_never_a_chowned_snapshot(
        workspace, cast, model_volume, cache_root, monkeypatch):
    monkeypatch.setenv("VOLUMES_IDMAP", "off")
    job, mount = read(workspace, cast["reader"])
    assert (job.status, job.result, mount.files_pulled) == ("success", generation("first"), 3), job.log
    assert "a private copy" in job.log and not (cache_root / SNAPSHOTS).exists()


def start_worker(tmp_path, name, cache, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "volumes_site", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=worker_env(VOLUMES_CACHE_DIR=cache, VOLUMES_WORKER_NAME=name, **env), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w"), start_new_session=True,
    )


def paused(proc) -> bool:
    with open(f"/proc/{proc.pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0] == "T"


def test_two_readers_starting_at_once_on_one_machine_fill_the_snapshot_once(workspace, cast, model_volume,
                                                                            tmp_path, settings):
    from django.conf import settings as django_settings

    cache = tmp_path / "machine"  # two worker processes of one machine: one cache
    filler = start_worker(tmp_path, "filler", cache, VOLUMES_PAUSE_AT="pull.after_file:1",
                          CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL)
    other = None
    try:
        first = job_submit(workspace, cast["reader"], "python", READER.format(sandbox="", mode=""))
        wait_for(lambda: paused(filler), 60, "the first reader to pause mid-fill")
        other = start_worker(tmp_path, "other", cache, CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL,
                             VOLUMES_LEASE_RENEW_INTERVAL=0.2)
        second = job_submit(workspace, cast["reader"], "python", READER.format(sandbox="", mode=""))
        wait_for(lambda: "waiting for another job of this worker to fill the snapshot"
                 in Job.objects.get(pk=second.pk).log, 60, "the second reader to wait for the fill")
        os.kill(filler.pid, signal.SIGCONT)
        wait_for(lambda: Job.objects.filter(pk__in=[first.pk, second.pk], status__in=Job.FINISHED).count() == 2,
                 60, "both readers")
    finally:
        for proc in (filler, other):
            if proc is not None:
                stop(proc)
    for job in (first, second):
        job = Job.objects.get(pk=job.pk)
        assert (job.status, job.result) == ("success", generation("first")), job.log
    pulled = sorted(JobVolume.objects.filter(job__in=[first, second]).values_list("files_pulled", flat=True))
    assert pulled == [0, 3]
    assert len(snapshots(cache)) == 1
