"""Scale-out: two worker "machines" against one server share volumes through leases.

Machine A is a real Celery worker process with its own cache, connected to the test database and
the broker from settings (Redis in CI). Machine B is a `manage.py agent_worker` process with its
own cache and no way to reach the database (DATABASE_URL points at a closed port) or the storage
(no credentials; an audit hook fails it if it opens a file under the storage root): it only
speaks HTTP to pytest-django's live_server with an API token.

Both take jobs of the same queue: counter jobs on one shared volume, plus a few jobs on volumes of
their own. Every job succeeds, the counter is exact, both machines took part, each machine's cache
holds its own copy of the shared volume (the value of the last job it ran there), and the shared
volume's generations form one chain: 1, 2, ... N, each built on the one before, with growing
fencing tokens.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.conf import settings as django_settings

from volumes.models import Job, JobVolume, Volume, VolumeCommit
from volumes.services.jobs import job_submit

from ..agent.test_agent_worker import GUARD  # the agent may open no database and no storage file
from ..engine.helpers import ROOT, worker_env
from .report import figure, scale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SUITE = "scale-out"
MACHINE_A, MACHINE_B = "machine-a", "machine-b"
SHARED_JOBS = scale(20, 200)
SOLO_JOBS = scale(4, 20)
DEADLINE = scale(75, 900)  # seconds for all jobs to finish

SHARED = """# volume: shared-counter state
import os, time

def main():
    path = os.path.join("state", "count.txt")
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    time.sleep(0.05)
    with open(path, "w") as fh:
        fh.write(str(count))
    return count
"""

SOLO = SHARED.replace("shared-counter", "solo-$args[n]").replace("def main():", "def main(n: int):")



def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_celery(tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "volumes_site", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "-n", f"{MACHINE_A}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=worker_env(VOLUMES_CACHE_DIR=tmp_path / f"{MACHINE_A}-cache", VOLUMES_WORKER_NAME=MACHINE_A,
                       CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{MACHINE_A}.log", "w"),
        start_new_session=True,
    )


def start_agent(tmp_path, server: str, token: str, storage_root) -> subprocess.Popen:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "AZURE", "GOOGLE", "STORAGE_EMULATOR", "DATABASE_", "VOLUMES_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="volumes_site.test_settings",
        DATABASE_URL=f"postgres://nobody@127.0.0.1:{closed_port()}/nodb",  # nothing listens there
        VOLUMES_DATA_DIR=str(tmp_path / f"{MACHINE_B}-var"),
        PYTHONPATH=f"{guard}{os.pathsep}{ROOT}",
        AGENT_FORBIDDEN_ROOT=str(storage_root),
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", "agent_worker", "--server", server, "--token", token, "--workspace", "acme",
         "--cache-dir", str(tmp_path / f"{MACHINE_B}-cache"), "--name", MACHINE_B, "--poll", "0.1"],
        cwd=ROOT, env=env, stdout=open(tmp_path / f"{MACHINE_B}.out", "w"),
        stderr=open(tmp_path / f"{MACHINE_B}.log", "w"), start_new_session=True,
    )


def stop(proc: subprocess.Popen, graceful: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(predicate, timeout: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def celery_ready(timeout: float) -> bool:
    from volumes_site.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name.startswith(f"{MACHINE_A}@") for reply in app.control.ping(timeout=0.5) for name in reply):
            return True
    return False


def test_a_celery_machine_and_an_agent_machine_share_volumes_exactly(live_server, workspace, cast, tmp_path,
                                                                    storage_root):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=cast["admin"]).key
    logs = [tmp_path / f"{MACHINE_A}.log", tmp_path / f"{MACHINE_B}.log"]
    machine_a = start_celery(tmp_path)
    machine_b = start_agent(tmp_path, live_server.url, token, storage_root)
    try:
        assert celery_ready(30), (tmp_path / f"{MACHINE_A}.log").read_text()[-3000:]
        started = time.monotonic()
        shared = [job_submit(workspace, cast["owner"], "python", SHARED) for _ in range(SHARED_JOBS)]
        solos = [job_submit(workspace, cast["owner"], "python", SOLO, {"n": n}) for n in range(SOLO_JOBS)]
        total = SHARED_JOBS + SOLO_JOBS
        wait_for(lambda: Job.objects.filter(status__in=Job.FINISHED).count() == total, DEADLINE,
                 f"{total} jobs on two machines", logs)
        elapsed = time.monotonic() - started
    finally:
        stop(machine_b, graceful=True)
        stop(machine_a)

    # Every job succeeded and the counter is exact: 1..N on the shared volume, 1 on each solo volume.
    failures = list(Job.objects.exclude(status="success").values_list("pk", "worker", "error"))
    assert not failures, failures[:3]
    shared_ids = [job.pk for job in shared]
    assert sorted(Job.objects.filter(pk__in=shared_ids).values_list("result", flat=True)) == \
        list(range(1, SHARED_JOBS + 1))
    assert list(Job.objects.filter(pk__in=[j.pk for j in solos]).values_list("result", flat=True)) == [1] * SOLO_JOBS

    # Both machines took part; the agent's jobs are marked as such.
    workers = Counter(Job.objects.values_list("worker", flat=True))
    assert set(workers) == {MACHINE_A, f"agent {MACHINE_B}"}, workers
    by_machine = {MACHINE_A: workers[MACHINE_A], MACHINE_B: workers[f"agent {MACHINE_B}"]}
    on_shared = Counter(Job.objects.filter(pk__in=[j.pk for j in shared]).values_list("worker", flat=True))
    assert set(on_shared) == {MACHINE_A, f"agent {MACHINE_B}"}, f"the shared volume's jobs ran on {on_shared}"

    # The shared volume's generations form one chain: each commit's parent is the generation
    # before it, each by one of our jobs, tokens only grow; the lease was given back.
    volume = Volume.objects.get(name="shared-counter")
    assert volume.generation == SHARED_JOBS and volume.lease_expires_at is None
    chain = list(VolumeCommit.objects.filter(volume=volume).order_by("generation")
                 .values_list("generation", "parent", "lease_token", "job_id"))
    assert [(g, p) for g, p, _, _ in chain] == [(g, g - 1) for g in range(1, SHARED_JOBS + 1)]
    tokens = [t for _, _, t, _ in chain]
    assert tokens == sorted(tokens) and len(set(tokens)) == SHARED_JOBS
    assert sorted(j for _, _, _, j in chain) == sorted(shared_ids)
    for job in Job.objects.filter(pk__in=shared_ids):
        mount = JobVolume.objects.get(job=job)
        assert (mount.base_generation, mount.committed_generation) == (job.result - 1, job.result), job.log
    # Never two scripts on the shared volume at once, whichever machine ran them.
    spans = sorted(Job.objects.filter(pk__in=shared_ids).values_list("script_started_at", "script_finished_at"))
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))

    # Each machine's cache holds its own copy: the value of the last shared job it ran.
    for machine, worker in ((MACHINE_A, MACHINE_A), (MACHINE_B, f"agent {MACHINE_B}")):
        last = max(Job.objects.filter(pk__in=shared_ids, worker=worker).values_list("result", flat=True))
        copy = tmp_path / f"{machine}-cache" / "acme" / "shared-counter" / "tree" / "count.txt"
        assert copy.read_text() == str(last), machine
    # ... and a machine only pulls what another one changed: never more than one file per job.
    pulled = JobVolume.objects.filter(job_id__in=shared_ids).values_list("files_pulled", flat=True)
    assert max(pulled) <= 1

    figure(SUITE, f"jobs done by the Celery machine (of {total})", by_machine[MACHINE_A], "jobs",
           target="> 0", ok=by_machine[MACHINE_A] > 0)
    figure(SUITE, f"jobs done by the agent machine (of {total})", by_machine[MACHINE_B], "jobs",
           target="> 0", ok=by_machine[MACHINE_B] > 0)
    figure(SUITE, "jobs per second, two machines, one shared volume", round(total / elapsed, 2), "jobs/s")
    figure(SUITE, "shared-volume generations in one chain", SHARED_JOBS, "commits",
           target=str(SHARED_JOBS), ok=True)
