"""Real Celery worker processes, each with its own cache, sharing volumes through leases."""
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings

from volumes.models import Job, JobVolume, Volume, VolumeCommit
from volumes.services.jobs import job_submit, reap_lost_jobs

from ..engine.helpers import ROOT, worker_env

COUNTER = """# volume: shared-counter state
import os

def main():
    path = os.path.join("state", "count.txt")
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as fh:
        fh.write(str(count))
    return count
"""


def start_worker(tmp_path, name, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "volumes_site", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=worker_env(VOLUMES_CACHE_DIR=tmp_path / name, VOLUMES_WORKER_NAME=name,
                       CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL, **env),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w"), start_new_session=True,
    )


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_three_workers_running_thirty_jobs_each_count_exactly_ninety(workspace, cast, tmp_path):
    workers = [start_worker(tmp_path, f"w{i}") for i in range(3)]
    try:
        jobs = [job_submit(workspace, cast["owner"], "python", COUNTER) for _ in range(90)]
        wait_for(lambda: Job.objects.filter(status__in=Job.FINISHED).count() == 90, 240, "90 jobs")
    finally:
        for proc in workers:
            stop(proc)
    failures = list(Job.objects.exclude(status="success").values_list("error", flat=True))
    assert not failures, failures[:3]
    assert sorted(Job.objects.values_list("result", flat=True)) == list(range(1, 91))
    assert len(set(Job.objects.values_list("worker", flat=True))) == 3  # every worker took part
    volume = Volume.objects.get(name="shared-counter")
    assert volume.generation == 90
    tokens = list(VolumeCommit.objects.filter(volume=volume).order_by("generation").values_list("lease_token", flat=True))
    assert tokens == sorted(tokens) and len(set(tokens)) == 90
    # Lease intervals never overlap: each job's script ran strictly after the previous one finished.
    spans = sorted(Job.objects.values_list("script_started_at", "script_finished_at"))
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))
    assert len(jobs) == 90


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_loses_its_lease_and_the_next_job_continues(workspace, cast, tmp_path, settings):
    slow = COUNTER.replace("    return count", "    import time; time.sleep(60)\n    return count")
    fast_worker = None
    victim = start_worker(tmp_path, "victim", VOLUMES_LEASE_TTL=2, VOLUMES_LEASE_RENEW_INTERVAL=0.5)
    try:
        first = job_submit(workspace, cast["owner"], "python", COUNTER)
        wait_for(lambda: Job.objects.get(pk=first.pk).status == "success", 60, "the first job")
        doomed = job_submit(workspace, cast["owner"], "python", slow)
        wait_for(lambda: Job.objects.get(pk=doomed.pk).script_started_at is not None, 60, "the slow job to start")
        stop(victim)
        killed_at = time.monotonic()
        fast_worker = start_worker(tmp_path, "survivor")
        after = job_submit(workspace, cast["owner"], "python", COUNTER)
        wait_for(lambda: Job.objects.get(pk=after.pk).status in Job.FINISHED, 60, "the job after the crash")
        waited = time.monotonic() - killed_at
    finally:
        stop(victim)
        if fast_worker:
            stop(fast_worker)
    after = Job.objects.get(pk=after.pk)
    assert after.status == "success" and after.result == 2, after.log  # the doomed job's 2 was never committed
    assert waited < 30
    assert JobVolume.objects.get(job=after).base_generation == 1
    assert reap_lost_jobs(grace_seconds=0) == 1
    doomed = Job.objects.get(pk=doomed.pk)
    assert doomed.status == "failure" and "worker lost" in doomed.error
