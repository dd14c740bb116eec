"""A hung process on the same worker (SIGSTOP while it holds the volume's local cache lock and a lease)
never blocks the volume: the next job gets it once that lease expires, and so does every other worker."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from volumes import conf
from volumes.engine import leases
from volumes.models import Volume
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from tests.engine.helpers import ROOT, worker_env
from .report import figure

pytestmark = pytest.mark.django_db(transaction=True)

HANG = """
import fcntl, os, signal, sys
import django
django.setup()
from volumes.engine import leases
from volumes.engine.cache import WorkerCache
from volumes.models import Volume

volume = Volume.objects.get(name="training-data")
cached = WorkerCache(sys.argv[1], 10**12).volume(volume.workspace_id, volume.name)
with cached.in_use():
    leases.acquire(volume.pk, "hung job", ttl=float(sys.argv[2]))
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # a debugger, a D-state read, an operator's ^Z
"""

SCRIPT = """# volume: training-data state
import os

def main():
    path = os.path.join("state", "count.txt")
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(count))
    return count
"""


HUNG_LEASE_TTL = 2.0  # the stopped process's lease
CACHE_LOCK_WAIT = 1.0
# The job itself once it has the lease and has stopped waiting for the cache lock: its script's Python start,
# a cold pull into a private copy and a push of one file. About 0.3 s on an idle machine; generous for a loaded
# 2-core one, yet far below what a wait on the stopped process (forever) or a full LEASE_WAIT_MAX would take.
JOB_MARGIN = 10.0


@pytest.fixture
def hung(volume, cache_root, settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root, "CACHE_LOCK_WAIT": CACHE_LOCK_WAIT}
    proc = subprocess.Popen([sys.executable, "-c", HANG, str(cache_root), str(HUNG_LEASE_TTL)], cwd=ROOT,
                            env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
        deadline = time.monotonic() + 10
        while not _stopped(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_stopped_neighbour_holding_the_cache_lock_never_blocks_the_volume(hung, workspace, cast):
    job = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    started = time.monotonic()
    done = threading.Event()

    def run():
        try:
            job_run(job.pk)
        finally:
            done.set()
            connection.close()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), "the job waited on the stopped process's cache lock"
    job.refresh_from_db()
    assert (job.status, job.result) == ("success", 1), job.log
    assert "private copy" in job.log, job.log
    # Another worker gets the volume at once.
    other = leases.acquire(Volume.objects.get(name="training-data").pk, "another worker", wait=30)
    elapsed = time.monotonic() - started
    leases.release(other)
    assert os.path.exists(f"/proc/{hung.pid}") and _stopped(hung.pid)  # still hung all along
    # The job waits out the stopped process's lease, then the cache lock, then runs; the other worker's
    # lease follows at once (the job released its lease).
    bound = HUNG_LEASE_TTL + conf.get("CACHE_LOCK_WAIT") + JOB_MARGIN
    figure("engine", "hung neighbour: time until another worker gets the volume", round(elapsed, 2), unit="s",
           target=f"<= {bound:g} (lease TTL + cache lock wait + {JOB_MARGIN:g} s for the job)", ok=elapsed <= bound)
    assert elapsed <= bound, job.log


def test_a_job_fails_clearly_when_its_private_copy_cannot_be_made(hung, workspace, cast, monkeypatch):
    """Even a failure after the bounded wait releases every lease (the volume is free for others)."""
    from volumes.engine import cache as cache_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.WorkerCache, "private_volume", broken)
    job = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    job = job_run(job.pk)
    assert job.status == "failure", job.log
    assert Volume.objects.get(name="training-data").lease_expires_at is None
