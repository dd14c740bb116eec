"""Reliability of leases: one holder per volume, fenced commits, fast failover, stopping when starved.

Real processes contend for one volume and record every operation (VOLUMES_HISTORY_FILE); the
history checker (`volumes.engine.history.check`) then proves no two leases overlapped by the
database clock, every commit built on the previous one, and tokens only grew. Holders are paused
with SIGSTOP and killed with SIGKILL; stale and foreign tokens are sent through the service and the
HTTP engine API; a state machine drives the lease service against the real database.
"""
from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.models import F
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test

from volumes.engine import history, leases, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.commits import ChangeCounts, commit_generation
from volumes.engine.manifest import Manifest
from volumes.engine.remote import DirectRemote
from volumes.exceptions import Conflict, LeaseLost
from volumes.models import Job, Volume, VolumeCommit
from volumes.runner import job as job_runner
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit
from volumes.services.volumes import volume_create

from ..engine.helpers import ROOT, worker_env
from .report import figure, scale

SUITE = "leases"
WORKER = str(ROOT / "tests" / "reliability" / "lease_worker.py")


# Helpers ------------------------------------------------------------------------------------------

class Worker:
    """A lease_worker.py process whose output lines are read as they come."""

    def __init__(self, mode: str, volume_id: int, cache_dir, *args, **env) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, mode, str(volume_id), str(cache_dir), *map(str, args)],
            env=worker_env(**env), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        self.closed = threading.Event()  # its stdout ended: every line is in `lines`
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.closed.set()

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """The first line starting with `prefix` the worker printed, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.said:
                if line.startswith(prefix):
                    return line
            if time.monotonic() > deadline or (self.closed.is_set() and self.lines.empty()):
                break
            self.poll(0.05)
        self.kill()
        raise AssertionError(f"no line starting {prefix!r} from the worker; stderr:\n{self.proc.stderr.read()[-3000:]}")

    def poll(self, timeout: float = 0) -> str | None:
        """The next line, if one comes within `timeout` seconds."""
        try:
            line = self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
        except queue.Empty:
            return None
        self.said.append(line)
        return line

    def finish(self, timeout: float = 120) -> None:
        self.proc.wait(timeout=timeout)
        assert self.proc.returncode == 0, self.proc.stderr.read()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def history_file(tmp_path, monkeypatch):
    """A history file that this process and the workers it starts append to."""
    path = tmp_path / "history.jsonl"
    monkeypatch.setattr(history, "_PATH", str(path))
    return path


def count_in(volume: Volume, cache_dir) -> int:
    """The counter file of the volume's current generation, read through a fresh checkout."""
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "checker", wait=30)
    try:
        cached = WorkerCache(cache_dir, 10**12).volume(volume.workspace_id, volume.name)
        sync.pull(remote, lease, cached)
        path = cached.tree / "count.txt"
        return int(path.read_text()) if path.exists() else 0
    finally:
        remote.release(lease)


def committed_tokens(volume: Volume) -> list[int]:
    return list(VolumeCommit.objects.filter(volume=volume).order_by("generation").values_list("lease_token", flat=True))


def first_to_take_over(waiters: list[Worker], timeout: float) -> tuple[Worker, float]:
    """The waiter that printed "held <monotonic time>" first, and that time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for waiter in waiters:
            line = waiter.poll()
            if line is not None and line.startswith("held"):
                return waiter, float(line.split()[1])
        time.sleep(0.01)
    raise AssertionError(f"no waiter took over within {timeout:g} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# The history checker on hand-made histories --------------------------------------------------------

def at(seconds: float) -> str:
    return f"2030-01-01 00:00:{seconds:06.3f}+00:00"


def acquire(token, start, end, base=0, volume=1):
    return {"op": "acquire", "volume": volume, "token": token, "holder": f"h{token}", "base": base, "outcome": "ok",
            "acquired_at": at(start), "expires_at": at(end)}


def renew(token, end, volume=1):
    return {"op": "renew", "volume": volume, "token": token, "outcome": "ok", "expires_at": at(end)}


def release(token, volume=1):
    return {"op": "release", "volume": volume, "token": token, "outcome": "ok"}


def commit(token, parent, generation=None, volume=1):
    return {"op": "commit", "volume": volume, "token": token, "outcome": "ok", "parent": parent,
            "generation": parent + 1 if generation is None else generation}


CLEAN = [
    acquire(1, 0, 10), commit(1, 0), release(1),
    acquire(2, 1, 11, base=1), renew(2, 15), commit(2, 1), commit(2, 2),  # then it crashed
    acquire(3, 15, 25, base=3), {"op": "renew", "volume": 1, "token": 2, "outcome": "fail"}, commit(3, 3),
    release(3), {"op": "release", "volume": 1, "token": 3, "outcome": "fail"},
    acquire(4, 16, 26, base=4), commit(4, 4),  # killed before it wrote its commit line ...
    acquire(5, 26.5, 36.5, base=6), commit(5, 6),  # ... so the next acquire tells the generation
    acquire(1, 0, 10, volume=2), commit(1, 0, volume=2),  # another volume has its own tokens
]


def test_the_checker_passes_a_clean_history():
    assert history.check(CLEAN) == []


@pytest.mark.parametrize("history_lines, expected", [
    ([acquire(1, 0, 10), acquire(2, 5, 15)], "token 2 (h2) acquired at 2030-01-01 00:00:05+00:00 while token 1"),
    ([acquire(1, 0, 10), renew(1, 20), acquire(2, 12, 22)], "while token 1 (h1) was live until"),
    ([acquire(1, 0, 10), release(1), acquire(2, 10, 20), acquire(3, 12, 22)], "token 3 (h3) acquired at"),
    ([acquire(2, 0, 10), release(2), acquire(2, 11, 20)], "token 2 acquired after token 2"),
    ([acquire(3, 0, 10), release(3), acquire(2, 11, 20)], "token 2 acquired after token 3"),
    ([acquire(1, 0, 10), commit(1, 0), commit(1, 0)], "on parent 0, but the previous committed generation is 1"),
    ([acquire(1, 0, 10), commit(1, 0), commit(1, 2)], "on parent 2, but the previous committed generation is 1"),
    ([commit(1, 0, generation=5)], "commit of generation 5 names parent 0"),
    ([acquire(1, 0, 10), commit(1, 0), release(1), acquire(2, 11, 20, base=0)], "(a lost update)"),
    ([acquire(1, 0, 10), acquire(2, 10, 20, base=0), commit(1, 0)], "token 1 committed generation 1 after token 2"),
])
def test_the_checker_finds_each_kind_of_violation(history_lines, expected):
    violations = history.check(history_lines)
    assert any(expected in v for v in violations), violations


def test_the_checker_runs_as_a_command(tmp_path):
    clean, broken = tmp_path / "clean.jsonl", tmp_path / "broken.jsonl"
    clean.write_text("".join(json.dumps(line) + "\n" for line in CLEAN))
    broken.write_text("".join(json.dumps(line) + "\n" for line in [acquire(1, 0, 10), acquire(2, 5, 15)]))
    command = [sys.executable, "-m", "volumes.engine.history"]
    ok = subprocess.run(command + [str(clean)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout == "", ok.stderr
    bad = subprocess.run(command + [str(broken)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "while token 1" in bad.stdout and "1 violations" in bad.stderr


# Processes incrementing one volume ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("processes", [2, 4, 8])
def test_processes_incrementing_one_volume_never_overlap_and_lose_no_update(volume, tmp_path, history_file, processes):
    rounds = scale(25, 200)
    workers = [
        Worker("cycles", volume.pk, tmp_path / f"cache-{i}", rounds, VOLUMES_LEASE_TTL=10,
               VOLUMES_HISTORY_FILE=history_file)
        for i in range(processes)
    ]
    for worker in workers:
        worker.finish(timeout=240)
    total = processes * rounds
    lines = history.read(history_file)
    violations = history.check(lines)
    overlaps = [v for v in violations if "was live until" in v]
    figure(SUITE, f"overlapping leases ({processes} processes x {rounds} cycles)", len(overlaps), target="0",
           ok=not overlaps)
    assert violations == []
    assert sum(1 for line in lines if line["op"] == "acquire" and line["outcome"] == "ok") == total
    holders = [line["holder"] for line in lines if line["op"] == "acquire"]
    handovers = sum(1 for a, b in zip(holders, holders[1:]) if a != b)
    assert handovers >= processes - 1  # every process got the volume at least once

    volume.refresh_from_db()
    counter = count_in(volume, tmp_path / "check")
    figure(SUITE, f"lost updates ({processes} processes, {handovers} handovers)", total - counter, target="0",
           ok=counter == total)
    assert counter == total and volume.generation == total
    tokens = committed_tokens(volume)
    assert tokens == sorted(tokens) and len(set(tokens)) == total


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_in_process_worker_and_an_agent_over_http_share_one_volume(
    live_server, workspace, cast, volume, tmp_path, settings, history_file,
):
    from rest_framework.authtoken.models import Token

    from volumes.agent import ApiClient, HttpRemote, claim

    settings.VOLUMES = {**settings.VOLUMES, "LEASE_TTL": 10.0}
    rounds = scale(10, 100)
    job_submit(workspace, cast["owner"], "python", "# volume: training-data state\ndef main():\n    pass\n",
               enqueue=False)
    client = ApiClient(live_server.url, Token.objects.create(user=cast["admin"]).key, "acme")
    spec = claim(client, "agent-1")
    remotes = {"in-process": DirectRemote(), "agent": HttpRemote(client, spec["id"], spec["job_key"])}

    def cycles(name: str) -> None:
        remote = remotes[name]
        cached = WorkerCache(tmp_path / name, 10**12).volume("acme", "training-data")
        try:
            for _ in range(rounds):
                lease = remote.acquire("acme", "training-data", name, wait=60)
                try:
                    base, _ = sync.pull(remote, lease, cached)
                    path = cached.tree / "count.txt"
                    path.write_text(str(int(path.read_text()) + 1 if path.exists() else 1))
                    sync.push(remote, lease, cached, base)
                finally:
                    remote.release(lease)
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(cycles, name) for name in remotes]:
            done.result(timeout=180)
    violations = history.check(history.read(history_file))
    figure(SUITE, f"overlapping leases (in-process + agent over HTTP, 2 x {rounds})",
           sum("was live until" in v for v in violations), target="0", ok=not violations)
    assert violations == []
    volume.refresh_from_db()
    assert count_in(volume, tmp_path / "check") == volume.generation == 2 * rounds
    assert volume.lease_expires_at is None
    workers = {line["holder"] for line in history.read(history_file) if line["op"] == "acquire"}
    assert {"in-process", "agent"} <= workers


# A paused holder --------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_holder_paused_past_its_ttl_can_neither_renew_nor_commit(volume, tmp_path, history_file):
    paused = Worker("stale", volume.pk, tmp_path / "paused-cache", VOLUMES_LEASE_TTL=2,
                    VOLUMES_HISTORY_FILE=history_file)
    try:
        paused.expect("ready")
        os.kill(paused.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while leases.current_holder(volume.pk) is not None:  # expires by the database clock
            assert time.monotonic() < deadline, "the paused holder's lease never expired"
            time.sleep(0.1)
        remote = DirectRemote()
        newer = remote.acquire(volume.workspace_id, volume.name, "newer holder", wait=10)
        cached = WorkerCache(tmp_path / "newer-cache", 10**12).volume(volume.workspace_id, volume.name)
        base, _ = sync.pull(remote, newer, cached)
        (cached.tree / "count.txt").write_text("written by the newer holder")
        assert sync.push(remote, newer, cached, base).committed_generation == 1
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    paused.proc.stdin.write("go\n")
    paused.proc.stdin.flush()
    answers = json.loads(paused.expect("{"))
    paused.finish()

    stale_writes = int(not answers["push"].startswith("LeaseLost"))
    figure(SUITE, "stale writes accepted (holder paused past its TTL)", stale_writes, target="0", ok=not stale_writes)
    assert answers["renew"].startswith("LeaseLost") and "was lost" in answers["renew"], answers
    assert answers["push"].startswith("LeaseLost") and "nothing was committed" in answers["push"], answers
    assert answers["release"] == "False", answers
    # The newer holder still holds the volume, and its generation is the only one.
    volume.refresh_from_db()
    assert (volume.generation, volume.lease_token, volume.lease_holder) == (1, newer.token, "newer holder")
    assert committed_tokens(volume) == [newer.token]
    remote.release(newer)
    pulled = WorkerCache(tmp_path / "after", 10**12).volume(volume.workspace_id, volume.name)
    with_lease = remote.acquire(volume.workspace_id, volume.name, "reader", wait=5)
    sync.pull(remote, with_lease, pulled)
    remote.release(with_lease)
    assert (pulled.tree / "count.txt").read_text() == "written by the newer holder"
    assert history.check(history.read(history_file)) == []


# Killed holders ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_holder_is_replaced_within_its_ttl(volume, tmp_path, history_file):
    ttl, kills = 2.0, scale(5, 30)
    started = iter(range(kills + 3))

    def start() -> Worker:
        return Worker("hold", volume.pk, tmp_path / f"cache-{next(started)}", VOLUMES_LEASE_TTL=ttl,
                      VOLUMES_HISTORY_FILE=history_file)

    holder = start()
    holder.expect("held")
    standby = [start(), start()]  # two waiters, so a process start-up never counts as failover time
    failovers = []
    try:
        for i in range(kills):
            for waiter in standby:
                waiter.expect("waiting")
            time.sleep(random.uniform(0.05, 0.6))  # the holder renews, pulls and commits meanwhile
            holder.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            holder.proc.wait()
            holder, took_over_at = first_to_take_over(standby, timeout=ttl + 30)
            failovers.append(took_over_at - killed_at)
            standby.remove(holder)
            if i + 2 < kills:
                standby.append(start())
    finally:
        for worker in [holder, *standby]:
            worker.kill()
    p50, p95 = percentile(failovers, 50), percentile(failovers, 95)
    print(f"failover after SIGKILL (TTL {ttl:g} s, {kills} kills): p50 {p50:.2f} s, p95 {p95:.2f} s")
    figure(SUITE, f"failover after SIGKILL, p50 ({kills} kills, TTL {ttl:g} s)", round(p50, 2), "s")
    figure(SUITE, f"failover after SIGKILL, p95 ({kills} kills, TTL {ttl:g} s)", round(p95, 2), "s",
           target=f"<= {ttl + 1.5:g}", ok=p95 <= ttl + 1.5)
    assert p95 <= ttl + 1.5, failovers  # the TTL plus the waiter's polling (at most 0.5 s) and slack
    assert history.check(history.read(history_file)) == []
    # Every kill left one whole generation: the counter equals the number of commits.
    Volume.objects.filter(pk=volume.pk).update(lease_expires_at=None)
    volume.refresh_from_db()
    assert volume.generation > 0 and count_in(volume, tmp_path / "check") == volume.generation


# A worker that cannot renew ---------------------------------------------------------------------------

STARVED = """# volume: training-data state
import time

def main():
    open("state/count.txt", "w").write("written by the starved job")
    time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failure", ["hangs", "raises", "taken over"])
def test_a_job_that_cannot_renew_is_stopped_before_its_lease_expires(
    workspace, cast, volume, tmp_path, settings, monkeypatch, failure,
):
    ttl, interval = 2.0, 0.4
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": tmp_path / "cache", "LEASE_TTL": ttl,
                        "LEASE_RENEW_INTERVAL": interval}
    real_renew, real_run_script = DirectRemote.renew, job_runner.run_script
    renewed_at: list[float] = []  # when each successful renew was sent (the database extends the lease after)
    script_stopped = threading.Event()
    stopped_at: list[float] = []

    def renew(self, lease):
        if len(renewed_at) < 2:
            sent = time.monotonic()
            real_renew(self, lease)
            renewed_at.append(sent)
        elif failure == "hangs":  # a database that stopped answering
            script_stopped.wait(30)
            raise OperationalError("server closed the connection unexpectedly")
        elif failure == "raises":
            raise OperationalError("could not connect to server: Connection refused")
        else:  # the worker was too slow: the lease expired and another worker took the volume
            Volume.objects.filter(pk=lease.volume_id).update(lease_expires_at=F("lease_acquired_at"))
            assert leases.try_acquire(lease.volume_id, "thief") is not None
            real_renew(self, lease)

    def run_script(*args, **kwargs):
        try:
            return real_run_script(*args, **kwargs)
        finally:
            stopped_at.append(time.monotonic())
            script_stopped.set()

    monkeypatch.setattr(DirectRemote, "renew", renew)
    monkeypatch.setattr(job_runner, "run_script", run_script)
    job = job_submit(workspace, cast["owner"], "python", STARVED, enqueue=False)
    started = time.monotonic()
    job = job_run(job.pk)
    took = time.monotonic() - started

    assert job.status == "failure" and job.error.startswith("lease lost"), (job.error, job.log)
    assert "nothing was committed" in job.log
    assert len(renewed_at) == 2 and stopped_at
    since_last_renew = stopped_at[0] - renewed_at[-1]
    assert since_last_renew < ttl, since_last_renew  # the script was dead before the lease could expire
    assert took < 20
    volume.refresh_from_db()
    assert volume.generation == 0 and not VolumeCommit.objects.filter(volume=volume).exists()
    if failure == "taken over":
        assert volume.lease_holder == "thief"  # the job's release did not touch the new holder's lease
    figure(SUITE, f"starved job stopped after last renew ({failure})", round(since_last_renew, 2), "s",
           target=f"< TTL {ttl:g}", ok=since_last_renew < ttl)


# Stale, double and foreign tokens ----------------------------------------------------------------------

def snapshot():
    rows = Volume.objects.order_by("pk").values_list(
        "pk", "generation", "manifest_key", "lease_token", "lease_holder", "lease_job_id", "lease_expires_at"
    )
    return list(rows), VolumeCommit.objects.count()


@pytest.mark.django_db(transaction=True)
def test_stale_double_and_foreign_tokens_are_refused_by_the_service(workspace, cast, volume):
    other = volume_create(workspace, "other-data", owner=cast["owner"])
    for _ in range(5):  # so the two volumes' tokens differ
        leases.release(leases.acquire(other.pk, "warm-up"))
    stale = leases.acquire(volume.pk, "old", ttl=0.3)
    Volume.objects.filter(pk=volume.pk).update(lease_expires_at=F("lease_acquired_at"))  # it expired
    current = leases.acquire(volume.pk, "new", wait=0)
    foreign = replace(leases.acquire(other.pk, "other holder"), volume_id=volume.pk)
    assert foreign.token != current.token
    before = snapshot()
    for lease in (stale, foreign):
        with pytest.raises(LeaseLost, match="was lost"):
            leases.renew(lease)
        with pytest.raises(LeaseLost, match="nothing was committed"):
            commit_generation(lease, 0, "volumes/acme/training-data/manifests/x.json", Manifest(), ChangeCounts())
        with pytest.raises(LeaseLost, match="nothing was committed"):
            leases.check_held(lease)
        assert leases.release(lease) is False
    assert snapshot() == before

    # A commit on a parent the volume has left, and a second release of one lease.
    assert commit_generation(current, 0, "k1", Manifest(), ChangeCounts()) == 1
    with pytest.raises(Conflict, match="nothing was committed") as moved:
        commit_generation(current, 0, "k2", Manifest(), ChangeCounts())
    assert type(moved.value) is Conflict
    assert leases.release(current) is True
    after_release = snapshot()
    assert leases.release(current) is False  # a second release is refused and changes nothing
    with pytest.raises(LeaseLost):
        leases.renew(current)
    with pytest.raises(LeaseLost):
        commit_generation(current, 1, "k3", Manifest(), ChangeCounts())
    assert snapshot() == after_release
    volume.refresh_from_db()
    assert (volume.generation, volume.manifest_key, volume.lease_expires_at) == (1, "k1", None)


AGENT = "/api/w/acme/agent/"
TWO_VOLUMES = "# volume: training-data data\n# volume: other-data other\ndef main():\n    return 1\n"


@pytest.mark.django_db(transaction=True)
def test_stale_double_and_foreign_tokens_are_refused_by_the_engine_api(workspace, cast, volume):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    other = volume_create(workspace, "other-data", owner=cast["owner"])
    for _ in range(5):
        leases.release(leases.acquire(other.pk, "warm-up"))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=cast['admin']).key}")
    jobs = []
    for _ in range(2):
        job_submit(workspace, cast["owner"], "python", TWO_VOLUMES, enqueue=False)
        spec = api.post(AGENT + "claim/", {"worker": "w"}, format="json").json()
        jobs.append((spec["id"], {"HTTP_X_JOB_KEY": spec["job_key"]}))

    def call(job, name, action, body):
        job_id, headers = job
        return api.post(f"{AGENT}jobs/{job_id}/volumes/{name}/{action}", body, format="json", **headers)

    def commit_body(token):
        return {"token": token, "parent": 0, "manifest": {"format": 1, "generation": 1, "entries": []}}

    def refused(response):
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["error"] == "lease_lost" and "lost" in body["detail"], body
        return True

    mine, theirs = jobs
    first = call(mine, "training-data", "lease/", {"holder": "agent w", "wait": 0}).json()["token"]
    assert call(mine, "training-data", "lease/release/", {"token": first}).json() == {"released": True}
    before = snapshot()
    assert call(mine, "training-data", "lease/release/", {"token": first}).json() == {"released": False}  # twice
    assert snapshot() == before

    current = call(mine, "training-data", "lease/", {"holder": "agent w", "wait": 0}).json()["token"]
    foreign = call(mine, "other-data", "lease/", {"holder": "agent w", "wait": 0}).json()["token"]
    assert first < current != foreign
    before = snapshot()
    for job, token in [(mine, first), (mine, foreign), (theirs, current)]:  # old, other volume's, other job's
        assert refused(call(job, "training-data", "lease/renew/", {"token": token}))
        assert refused(call(job, "training-data", "commit/", commit_body(token)))
        assert call(job, "training-data", "lease/release/", {"token": token}).json() == {"released": False}
    assert snapshot() == before
    # The rightful holder is untouched and can still commit.
    assert call(mine, "training-data", "lease/renew/", {"token": current}).json() == {"ok": True}
    assert call(mine, "training-data", "commit/", commit_body(current)).json()["generation"] == 1


# Jobs mounting two volumes in opposite orders -------------------------------------------------------------

def two_counters(first: str, second: str) -> str:
    return f"""# volume: {first} {first}
# volume: {second} {second}
import os

def main():
    counts = {{}}
    for name in ("alpha", "beta"):
        path = os.path.join(name, "count.txt")
        counts[name] = int(open(path).read()) + 1 if os.path.exists(path) else 1
        open(path, "w").write(str(counts[name]))
    return counts
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_job_pairs_mounting_two_volumes_in_opposite_orders_never_deadlock(workspace, cast, tmp_path, settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": tmp_path / "cache", "LEASE_TTL": 10.0,
                        "LEASE_RENEW_INTERVAL": 2.0}
    pairs = scale(10, 50)
    alpha, beta = (volume_create(workspace, name, owner=cast["owner"]) for name in ("alpha", "beta"))
    jobs = []
    for _ in range(pairs):
        jobs.append(job_submit(workspace, cast["owner"], "python", two_counters("alpha", "beta"), enqueue=False).pk)
        jobs.append(job_submit(workspace, cast["owner"], "python", two_counters("beta", "alpha"), enqueue=False).pk)

    def run(job_id: int) -> None:
        try:
            job_run(job_id)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        done, not_done = wait([pool.submit(run, job_id) for job_id in jobs], timeout=240)
        assert not not_done, f"{len(not_done)} jobs never finished: a deadlock?"
    for future in done:
        future.result()
    failures = list(Job.objects.exclude(status="success").values_list("error", flat=True))
    assert not failures, failures[:3]
    for volume in (alpha, beta):
        volume.refresh_from_db()
        assert volume.generation == 2 * pairs
        assert count_in(volume, tmp_path / "check") == 2 * pairs
    results = Job.objects.values_list("result", flat=True)
    assert sorted(r["alpha"] for r in results) == list(range(1, 2 * pairs + 1))
    assert sorted(r["beta"] for r in results) == list(range(1, 2 * pairs + 1))


# The lease service as a state machine -------------------------------------------------------------------

class LeaseMachine(RuleBasedStateMachine):
    """Rules act on the real lease service and database; the model says what each must answer.

    Time is simulated: `advance` moves the lease's expiry back by whole seconds, far more than
    the real time an example takes, so the database clock and the model never disagree."""

    volume_id: int = 0
    granted = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        Volume.objects.filter(pk=self.volume_id).update(
            generation=0, manifest_key="", lease_holder="", lease_job=None, lease_acquired_at=None,
            lease_expires_at=None,
        )
        VolumeCommit.objects.filter(volume_id=self.volume_id).delete()
        self.now = 0
        self.token = Volume.objects.values_list("lease_token", flat=True).get(pk=self.volume_id)
        self.expires: int | None = None  # model time the newest lease expires; None once released
        self.generation = 0
        self.commits = 0

    def live(self) -> bool:
        return self.expires is not None and self.expires > self.now

    @rule(target=granted, holder=st.sampled_from(["a", "b", "c"]), ttl=st.sampled_from([60, 120]))
    def acquire(self, holder, ttl):
        lease = leases.try_acquire(self.volume_id, holder, ttl=ttl)
        if self.live():
            assert lease is None, "a second holder got a live lease"
            return multiple()
        assert lease is not None and lease.token > self.token and lease.generation == self.generation
        self.token, self.expires = lease.token, self.now + ttl
        return lease

    @rule(lease=granted)
    def renew(self, lease):
        if lease.token == self.token and self.live():
            leases.renew(lease)
            self.expires = self.now + int(lease.ttl)
        else:
            with pytest.raises(LeaseLost):
                leases.renew(lease)

    @rule(lease=granted)
    def release(self, lease):
        assert leases.release(lease) is (lease.token == self.token and self.expires is not None)
        if lease.token == self.token:
            self.expires = None

    @rule(lease=granted)
    def commit(self, lease):
        self.commits += 1
        key = f"manifest-{self.commits}"
        if lease.token == self.token and self.live():
            assert commit_generation(lease, self.generation, key, Manifest(), ChangeCounts()) == self.generation + 1
            self.generation += 1
        else:
            with pytest.raises(LeaseLost):
                commit_generation(lease, self.generation, key, Manifest(), ChangeCounts())

    @rule(lease=granted)
    def commit_on_an_old_parent(self, lease):
        if self.generation == 0:
            return
        with pytest.raises(Conflict) as refused:
            commit_generation(lease, self.generation - 1, "old-parent", Manifest(), ChangeCounts())
        assert type(refused.value) is (Conflict if lease.token == self.token else LeaseLost)

    @rule(seconds=st.sampled_from([15, 30, 60, 90]))
    def advance(self, seconds):
        Volume.objects.filter(pk=self.volume_id, lease_expires_at__isnull=False).update(
            lease_expires_at=F("lease_expires_at") - timedelta(seconds=seconds)
        )
        self.now += seconds

    @invariant()
    def the_database_agrees_with_the_model(self):
        row = Volume.objects.values("lease_token", "generation").get(pk=self.volume_id)
        assert row == {"lease_token": self.token, "generation": self.generation}
        assert (leases.current_holder(self.volume_id) is not None) == self.live()  # at most one live holder
        assert VolumeCommit.objects.filter(volume_id=self.volume_id).count() == self.generation


@pytest.mark.django_db
def test_the_lease_service_behaves_like_its_model(volume):
    LeaseMachine.volume_id = volume.pk
    run_state_machine_as_test(
        LeaseMachine,
        settings=hypothesis_settings(max_examples=30, stateful_step_count=20, deadline=None, database=None),
    )
