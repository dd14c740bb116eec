"""docs/scaling.md's "A cluster, step by step", run line by line as an operator types it.

The recipe's commands are read from the docs (only addresses, the bucket and the token are
substituted), so the docs cannot drift from the code. The machines are processes on this host:
web (gunicorn, DEBUG off, no TLS proxy as the docs describe), a Celery job worker, beat with its
maintenance worker, and an agent with no database settings and no storage credentials, against
a moto S3 bucket, the test database and the suite's broker. Jobs go through the REST API: one
that only the agent can take, counters on one volume with the agent and the Celery worker both
running, and one after the agent has stopped. The counter must be exact.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from ..engine.helpers import ROOT, database_url
from ..jobs.test_celery_workers import COUNTER
from ..reliability.test_two_machines import closed_port
from ..servers import S3_KEYS, S3_REGION, create_bucket, free_port, new_bucket_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DOCS = ROOT / "docs" / "scaling.md"
NO_TLS = {"SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
          "SECURE_HSTS_SECONDS": "0"}


def recipe_lines() -> list[str]:
    text = DOCS.read_text()
    section = text[text.index("## A cluster, step by step"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def line_for(lines: list[str], needle: str) -> str:
    found = [line for line in lines if needle in line]
    assert len(found) == 1, f"the recipe should have one line with {needle!r}: {found}"
    return found[0]


def argv_and_env(line: str, substitutions: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    for docs_value, local_value in substitutions.items():
        line = line.replace(docs_value, local_value)
    words = shlex.split(line)
    env = {}
    while "=" in words[0] and not words[0].startswith(("-", "/")):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    program = Path(sys.executable).with_name(words[0])
    words[0] = sys.executable if words[0] == "python" else str(program)
    return words, env


def clean_environment() -> dict[str, str]:
    """This host's environment without anything of the test run's own configuration."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("VOLUMES_", "DATABASE_", "CELERY_", "DJANGO_", "SECRET_", "SECURE_", "AWS_",
                                 "AZURE", "GOOGLE", "STORAGE_EMULATOR", "DEBUG"))}


def broker_url() -> str:
    url = django_settings.CELERY_BROKER_URL
    # A Redis database of its own: no task another test left in the queue reaches these workers.
    return re.sub(r"/\d*$", "/9", url) if url.startswith("redis") else url


def api(server: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(server + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_for_jobs(server: str, token: str, ids: list[int], logs: Path, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [api(server, token, f"/api/w/acme/jobs/{job_id}/") for job_id in ids]
        if all(job["status"] in ("success", "failure", "cancelled") for job in jobs):
            return jobs
        assert time.monotonic() < deadline, (
            [(job["id"], job["status"], job["worker"]) for job in jobs], machine_logs(logs))
        time.sleep(0.5)


def machine_logs(logs: Path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(logs.glob("*.log")))


def test_the_docs_cluster_recipe_runs_jobs_on_celery_workers_and_agents(moto_server, tmp_path):
    lines = recipe_lines()
    bucket = new_bucket_name()
    create_bucket("s3", {"bucket": bucket, "endpoint_url": moto_server, "region": S3_REGION, **S3_KEYS})
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    substitutions = {
        "s3://volumes?endpoint_url=https://s3.internal&region=us-east-1&access_key=KEY&secret_key=SECRET":
            f"s3://{bucket}?endpoint_url={moto_server}&region={S3_REGION}"
            f"&access_key={S3_KEYS['access_key']}&secret_key={S3_KEYS['secret_key']}",
        "https://volumes.example.com": server,
        "/var/cache/volumes": str(tmp_path / "agent-cache"),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    broker = broker_url()
    shared_data = tmp_path / "data"  # an embedded filesystem broker lives in the data folder: share it then

    def machine(name: str, **extra) -> dict[str, str]:
        env = clean_environment()
        env.update(DATABASE_URL=database_url(), CELERY_BROKER_URL=broker, SECRET_KEY="recipe-" + "k" * 50,
                   DEBUG="false", VOLUMES_STORAGE_ALLOWED_HOSTS="127.0.0.1", PYTHONPATH=str(ROOT), HOST="127.0.0.1",
                   PORT=str(port), VOLUMES_WORKER_NAME=name,
                   VOLUMES_DATA_DIR=str(shared_data if broker.startswith("filesystem") else tmp_path / f"{name}-data"),
                   VOLUMES_CACHE_DIR=str(tmp_path / f"{name}-cache"), **NO_TLS)
        env.update(extra)
        return env

    def run_once(line: str) -> str:
        argv, extra = argv_and_env(line, substitutions)
        done = subprocess.run(argv, cwd=ROOT, env={**machine("admin"), **extra}, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    started: dict[str, subprocess.Popen] = {}

    def start(name: str, line: str, env: dict[str, str]) -> None:
        argv, extra = argv_and_env(line, substitutions)
        started[name] = subprocess.Popen(argv, cwd=ROOT, env={**env, **extra}, stdout=open(logs / f"{name}.out", "w"),
                                         stderr=open(logs / f"{name}.log", "w"), start_new_session=True)

    def stop(name: str) -> None:
        proc = started.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    try:
        # Once: the database, the workspace on the bucket (checked when saved), the agent's role and token.
        for needle in ("manage.py migrate", "manage.py create_workspace", "manage.py agent_role"):
            run_once(line_for(lines, needle))
        token = re.search(r"\b[0-9a-f]{40}\b", run_once(line_for(lines, "drf_create_token robot"))).group(0)
        substitutions["VOLUMES_TOKEN=TOKEN"] = f"VOLUMES_TOKEN={token}"
        alice = re.search(r"\b[0-9a-f]{40}\b", run_once("python manage.py drf_create_token alice")).group(0)

        # The web machine, then beat with its maintenance worker, then an agent: no job worker yet.
        run_once(line_for(lines, "collectstatic"))
        start("web", line_for(lines, "gunicorn "), machine("web"))
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{server}/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert started["web"].poll() is None and time.monotonic() < deadline, machine_logs(logs)
            time.sleep(0.3)
        beat_env = machine("beat")
        start("beat", line_for(lines, "celery -A volumes_site beat"), beat_env)
        start("maintenance", line_for(lines, "-Q maintenance "), machine("maintenance"))
        agent_env = {k: v for k, v in clean_environment().items()}
        agent_env.update(DATABASE_URL=f"postgres://nobody@127.0.0.1:{closed_port()}/nodb",
                         VOLUMES_DATA_DIR=str(tmp_path / "agent-data"), PYTHONPATH=str(ROOT))
        start("agent", line_for(lines, "agent_worker"), agent_env)

        def submit(count: int) -> list[int]:
            return [api(server, alice, "/api/w/acme/jobs/", {"language": "python", "content": COUNTER})["id"]
                    for _ in range(count)]

        # Only the agent takes jobs now (the maintenance worker reads its own queue only).
        first = wait_for_jobs(server, alice, submit(1), logs)
        assert [(job["status"], job["result"]) for job in first] == [("success", 1)], (first, machine_logs(logs))
        agent_worker = first[0]["worker"]

        # A Celery job worker joins: both machines take the next jobs on the same volume.
        start("worker", line_for(lines, "-Q celery,maintenance"), machine("worker"))
        both = wait_for_jobs(server, alice, submit(5), logs)
        assert all(job["status"] == "success" for job in both), (both, machine_logs(logs))
        assert sorted(job["result"] for job in both) == [2, 3, 4, 5, 6]

        # The agent stops: the Celery worker alone runs the last job, on the latest generation.
        stop("agent")
        last = wait_for_jobs(server, alice, submit(1), logs)
        assert [(job["status"], job["result"]) for job in last] == [("success", 7)], (last, machine_logs(logs))
        assert last[0]["worker"] != agent_worker

        volume = api(server, alice, "/api/w/acme/volumes/shared-counter/")
        assert volume["generation"] == 7
        # Beat keeps its schedule in its data folder, never in the repository.
        assert any(Path(beat_env["VOLUMES_DATA_DIR"]).glob("celerybeat-schedule*")), machine_logs(logs)
        for name, proc in started.items():
            assert proc.poll() is None, f"{name} exited early\n{machine_logs(logs)}"
    finally:
        for name in list(started):
            stop(name)
