"""Agent workers end to end: a real `manage.py agent_worker` process against a live server.

The agent runs with DATABASE_URL pointing at a database that does not exist and without any
storage credentials; an audit hook in the agent process fails it if it ever opens a database
connection or a file of the server's storage.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from volumes.models import Job, Volume, VolumeCommit, VolumePin
from volumes.permissions import set_share
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from ..engine.helpers import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COUNTER = """# volume: training-data state
import os

def main(pause: float = 0):
    import time
    path = os.path.join("state", "count.txt")
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    time.sleep(pause)
    with open(path, "w") as fh:
        fh.write(str(count))
    return count
"""

GUARD = textwrap.dedent("""
    import os, sys
    _forbidden = os.environ["AGENT_FORBIDDEN_ROOT"]

    def _hook(event, args):
        if event == "sqlite3.connect":
            raise RuntimeError("the agent tried to open a database: %r" % (args,))
        if event == "open" and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if os.path.abspath(path).startswith(_forbidden):
                raise RuntimeError("the agent tried to open the server's storage: %s" % path)

    sys.addaudithook(_hook)
""")


@pytest.fixture(autouse=True)
def no_celery(monkeypatch):
    from volumes import tasks

    monkeypatch.setattr(tasks.run_job, "delay", lambda *a, **k: None)


@pytest.fixture
def agent(live_server, cast, tmp_path, storage_root):
    """agent() runs `agent_worker --once` as a separate process and returns it when it exits."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=cast["admin"]).key
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "AZURE", "GOOGLE", "STORAGE_EMULATOR", "DATABASE_", "VOLUMES_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="volumes_site.test_settings",
        DATABASE_URL="sqlite:////nonexistent/agent.db",
        VOLUMES_DATA_DIR=str(tmp_path / "agent-var"),
        PYTHONPATH=f"{guard}{os.pathsep}{ROOT}",
        AGENT_FORBIDDEN_ROOT=str(storage_root),
    )

    def start(*extra: str, workspaces=("acme",), token=token, environ=None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "agent_worker", "--server", live_server.url, "--token", token,
             *[arg for ws in workspaces for arg in ("--workspace", ws)], "--cache-dir", str(tmp_path / "agent-cache"), "--name", "agent-1", "--once",
             *extra],
            cwd=ROOT, env={**env, **(environ or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def run(*extra: str, timeout: float = 60, ok: bool = True, **options) -> subprocess.CompletedProcess:
        proc = start(*extra, **options)
        out, err = proc.communicate(timeout=timeout)
        assert (proc.returncode == 0) is ok, err[-3000:]
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    run.start = start
    return run


def submit(workspace, user, **args) -> Job:
    return job_submit(workspace, user, "python", COUNTER, args, enqueue=False)


def test_a_counter_persists_across_two_jobs_run_by_an_agent(agent, workspace, cast):
    first = submit(workspace, cast["owner"])
    out = agent().stdout
    assert f"job {first.pk}: success" in out
    second = submit(workspace, cast["owner"])
    agent()
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, first.result, second.status, second.result) == ("success", 1, "success", 2), second.log
    assert second.worker == "agent agent-1" and "started on agent agent-1" in second.log
    mount = second.mounts.get()
    assert (mount.mode, mount.base_generation, mount.committed_generation) == ("rw", 1, 2)
    assert mount.files_skipped == 1 and mount.files_pulled == 0 and mount.files_pushed == 1  # the cache was kept
    assert second.script_started_at and second.finished_at
    volume = Volume.objects.get(name="training-data")
    assert volume.generation == 2 and volume.lease_expires_at is None  # released
    commit = VolumeCommit.objects.get(volume=volume, generation=2)
    assert (commit.job_id, commit.user.username) == (second.pk, "owner")


def test_an_agent_pushes_an_empty_file(agent, workspace, cast):
    """The agent uploads an empty blob with a Content-Length: a chunked body is refused by servers
    that cannot read one (411), such as this live server."""
    job = job_submit(workspace, cast["owner"], "python",
                     "# volume: training-data state\ndef main():\n    open('state/empty.txt', 'w').close()\n",
                     enqueue=False)
    agent()
    job.refresh_from_db()
    assert job.status == "success", job.log
    assert Volume.objects.get(name="training-data").file_count == 1


def test_a_read_only_share_runs_on_an_agent_but_nothing_is_synced_back(agent, workspace, cast, volume, settings,
                                                                       cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    assert job_run(submit(workspace, cast["owner"]).pk).result == 1  # an in-process worker writes 1
    set_share(volume, cast["reader"], "read")
    as_reader = submit(workspace, cast["reader"])
    agent()
    as_reader.refresh_from_db()
    if os.geteuid() == 0:  # a job user of its own: the volume is mounted read-only, the write fails
        assert as_reader.status == "failure" and "Read-only file system" in as_reader.error, as_reader.log
    else:  # the job runs as the worker: it writes 2, which is discarded
        assert (as_reader.status, as_reader.result) == ("success", 2), as_reader.log
    assert as_reader.mounts.get().mode == "ro"
    volume.refresh_from_db()
    assert volume.generation == 1  # the reader's 2 was not kept
    assert job_run(submit(workspace, cast["owner"]).pk).result == 2


def test_an_agent_reader_pins_and_runs_while_a_writer_holds_the_lease(agent, workspace, cast, volume, settings,
                                                                     cache_root):
    from volumes.engine import leases
    from volumes.models import VolumePin

    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    assert job_run(submit(workspace, cast["owner"]).pk).result == 1  # generation 1 holds count.txt = 1
    set_share(volume, cast["reader"], "read")
    writer = leases.acquire(volume.pk, "a writer elsewhere")
    try:
        shared = submit(workspace, cast["reader"])
        asked = job_submit(workspace, cast["owner"], "python",
                           "# volume: training-data state (read-only)\ndef main():\n"
                           "    return open('state/count.txt').read()\n", enqueue=False)
        agent(timeout=60)
        agent(timeout=60)
    finally:
        leases.release(writer)
    shared.refresh_from_db(), asked.refresh_from_db()
    if os.geteuid() == 0:  # a job user of its own: the volume is mounted read-only, it read 1, its write failed
        assert shared.status == "failure" and "Read-only file system" in shared.error, shared.log
    else:
        assert (shared.status, shared.result) == ("success", 2), shared.log  # read 1, its 2 discarded
    assert (asked.status, asked.result) == ("success", "1"), asked.log
    for job in (shared, asked):
        assert "pinned generation 1 of training-data (read-only, no lease)" in job.log
        assert (job.mounts.get().mode, job.mounts.get().base_generation) == ("ro", 1)
    assert Volume.objects.get(pk=volume.pk).generation == 1 and not VolumePin.objects.exists()


def test_an_agent_without_database_or_storage_access_reports_a_failing_job(agent, workspace, cast):
    failing = job_submit(workspace, cast["owner"], "python",
                         "# volume: training-data state\ndef main():\n    open('state/x', 'w').write('x')\n"
                         "    raise ValueError('boom')\n", enqueue=False)
    result = agent("-v", "2")
    assert "leasing volume training-data" in result.stderr  # -v 2 echoes the job log
    failing.refresh_from_db()
    assert failing.status == "failure" and "boom" in failing.error
    assert "not committed" in failing.log
    assert Volume.objects.get(name="training-data").generation == 0
    assert agent().stdout.strip() == "no queued job"


def test_an_agent_waits_for_a_volume_an_in_process_worker_holds(agent, workspace, cast, settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    slow = submit(workspace, cast["owner"], pause=8)  # outlasts the agent's start on a loaded machine

    def run_slow():
        try:
            job_run(slow.pk)  # what a Celery worker does
        finally:
            connection.close()

    worker = threading.Thread(target=run_slow)
    worker.start()
    deadline = time.monotonic() + 20
    while not Volume.objects.filter(name="training-data", lease_expires_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the in-process job never took the lease"
        time.sleep(0.05)
    queued = submit(workspace, cast["owner"])
    now = timezone.now()
    VolumePin.objects.create(volume=Volume.objects.get(name="training-data"), generation=1, holder="reader-1",
                             pinned_at=now, expires_at=now + timedelta(seconds=120))
    proc = agent.start()
    out, err = proc.communicate(timeout=60)
    worker.join()
    assert proc.returncode == 0, err[-3000:]
    slow.refresh_from_db(), queued.refresh_from_db()
    assert (slow.result, queued.result) == (1, 2), queued.log
    assert f"held by job {slow.pk} on {slow.worker}" in queued.log
    assert "; 1 reader pinned to a generation" in queued.log  # the server's answer carries the queue too
    assert queued.script_started_at >= slow.script_finished_at  # never both at once


def test_a_bad_token_is_refused_clearly(live_server, workspace):
    result = subprocess.run(
        [sys.executable, "manage.py", "agent_worker", "--server", live_server.url, "--token", "nope",
         "--workspace", "acme", "--once"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": "sqlite:////nonexistent/agent.db"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "refused the API token" in result.stderr and "Invalid token" in result.stderr


def test_without_workspace_an_agent_serves_every_workspace_its_user_may_run_agents_in(agent, workspace, cast,
                                                                                       storage_root):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from volumes.services.workspaces import workspace_ensure

    other = workspace_ensure("beta", admins=["someone-else"], storage_url=f"file://{storage_root}")
    foreign = submit(other, get_user_model().objects.get(username="someone-else"))
    mine = submit(workspace, cast["owner"])
    out = agent(workspaces=()).stdout
    mine.refresh_from_db(), foreign.refresh_from_db()
    assert f"job {mine.pk}: success" in out and mine.result == 1
    assert foreign.status == "queued"  # the token's user is not a member of beta

    member_token = Token.objects.create(user=cast["member"]).key
    refused = agent(workspaces=(), token=member_token, ok=False)
    assert "may not run agent workers in any workspace" in refused.stderr


def test_an_agent_job_whose_second_volume_fails_commits_neither(agent, workspace, cast):
    workspace.max_volume_size = 1000
    workspace.save()
    job = job_submit(workspace, cast["owner"], "python",
                     "# volume: alpha a\n# volume: beta b\ndef main():\n"
                     "    open('a/small.txt', 'w').write('small')\n    open('b/big.txt', 'w').write('x' * 5000)\n",
                     enqueue=False)
    agent()
    job.refresh_from_db()
    assert job.status == "failure" and "over its limit" in job.error, job.log
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 0, "beta": 0}
    workspace.max_volume_size = None
    workspace.save()
    both = job_submit(workspace, cast["owner"], "python", job.content, enqueue=False)
    agent()
    both.refresh_from_db()
    assert both.status == "success", both.log
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 1, "beta": 1}


def test_a_job_on_an_agent_sees_only_its_own_variables_and_the_agents_allow_listed_ones(agent, workspace, cast):
    script = "# volume: training-data data\nimport os\ndef main():\n    return dict(os.environ)\n"
    job = job_submit(workspace, cast["owner"], "python", script, enqueue=False)
    agent(environ={"VOLUMES_JOB_ENV_ALLOW": "HTTPS_PROXY", "HTTPS_PROXY": "http://proxy.example:3128",
                   "AWS_SECRET_ACCESS_KEY": "agent-aws-secret", "VOLUMES_AGENT_TOKEN": "agent-token-secret"})
    job.refresh_from_db()
    assert job.status == "success", job.log
    env = job.result
    assert set(env) == {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "HTTPS_PROXY", "VOLUMES_JOB_ID", "VOLUMES_WORKSPACE",
                        "VOLUMES_USER", "VOLUMES_MOUNTS"}, sorted(env)
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["VOLUMES_USER"] == "owner"
    assert env["VOLUMES_JOB_ID"] == str(job.pk) and env["VOLUMES_WORKSPACE"] == "acme"


def test_an_agent_whose_own_sandbox_all_cannot_run_fails_the_job_before_its_script_starts(agent, workspace, cast):
    """The server does not ask for the sandbox; the agent's operator does (VOLUMES_SANDBOX_ALL in its own
    environment), and the agent has no nsjail: the job fails saying so, and never runs unsandboxed."""
    marker = Path(f"/tmp/volumes-agent-sandbox-all-{uuid.uuid4().hex}")  # writable by a job user of its own too
    script = f"# volume: training-data state\ndef main():\n    open({str(marker)!r}, 'w').write('ran')\n"
    job = job_submit(workspace, cast["owner"], "python", script, enqueue=False)
    agent(environ={"VOLUMES_SANDBOX_ALL": "true", "VOLUMES_NSJAIL": "/nonexistent/nsjail"})
    job.refresh_from_db()
    assert job.status == "failure", job.log
    assert "must run in the sandbox" in job.error and "VOLUMES_SANDBOX_ALL is on" in job.error, job.error
    assert "/nonexistent/nsjail" in job.error and "was not run" in job.error
    assert not marker.exists() and job.script_started_at is None and "leasing volume" not in job.log
    volume = Volume.objects.filter(name="training-data").first()
    assert volume is None or (volume.generation == 0 and volume.lease_expires_at is None)
