"""Jobs are tenants: a real job that returns os.environ holds none of the worker's variables except the
allow-listed ones, in this process (the Celery code path), sandboxed and not, and on a real Celery worker."""
import json
import os

import pytest
from django.conf import settings as django_settings

from volumes.models import Job
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from .test_celery_workers import start_worker, stop, wait_for

ENV_SCRIPT = """{sandbox}# volume: env-data data
import os

def main():
    return dict(os.environ)
"""
MINIMAL = {"PATH", "HOME", "LANG", "TZ", "TMPDIR"}
JOB_VARS = {"VOLUMES_JOB_ID", "VOLUMES_WORKSPACE", "VOLUMES_USER", "VOLUMES_MOUNTS"}
SECRETS = {
    "DATABASE_URL": "postgres://postgres:hunter2@127.0.0.1:5432/elsewhere",
    "SECRET_KEY": "worker-secret-key-never-shown",
    "AWS_SECRET_ACCESS_KEY": "worker-aws-secret",
}


def check(job: Job, allowed: dict[str, str]) -> None:
    assert job.status == "success", job.log
    env = job.result
    assert set(env) == MINIMAL | JOB_VARS | set(allowed), sorted(env)
    assert {name: env[name] for name in allowed} == allowed
    assert env["VOLUMES_JOB_ID"] == str(job.pk) and env["VOLUMES_WORKSPACE"] == job.workspace_id
    assert env["VOLUMES_USER"] == job.user.username
    assert json.loads(env["VOLUMES_MOUNTS"]) == {"env-data": "data"}
    for secret in SECRETS.values():
        assert secret not in json.dumps(env)


@pytest.fixture
def worker_secrets(monkeypatch, settings, cache_root):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root, "JOB_ENV_ALLOW": ["HTTPS_PROXY", "NOT_SET_HERE"]}


@pytest.mark.parametrize("sandbox", [False, pytest.param(True, marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox tests run as root"))])
def test_a_job_sees_its_own_variables_and_the_allow_listed_ones_only(workspace, cast, worker_secrets, sandbox):
    job = job_submit(workspace, cast["owner"], "python", ENV_SCRIPT.format(sandbox="# sandbox\n" if sandbox else ""),
                     enqueue=False)
    check(job_run(job.pk), {"HTTPS_PROXY": "http://proxy.example:3128"})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_on_a_real_celery_worker_never_sees_the_workers_settings(workspace, cast, tmp_path):
    worker = start_worker(tmp_path, "envw", VOLUMES_JOB_ENV_ALLOW="HTTPS_PROXY",
                          HTTPS_PROXY="http://proxy.example:3128", AWS_SECRET_ACCESS_KEY=SECRETS["AWS_SECRET_ACCESS_KEY"],
                          SECRET_KEY=SECRETS["SECRET_KEY"])
    try:
        job = job_submit(workspace, cast["owner"], "python", ENV_SCRIPT.format(sandbox=""))
        wait_for(lambda: Job.objects.get(pk=job.pk).status in Job.FINISHED, 90, "the job")
    finally:
        stop(worker)
    job = Job.objects.get(pk=job.pk)
    check(job, {"HTTPS_PROXY": "http://proxy.example:3128"})
    assert django_settings.DATABASES["default"]["NAME"] not in json.dumps(job.result)


def test_a_worker_secret_on_the_allow_list_never_reaches_the_job(workspace, cast, worker_secrets, settings):
    """Workers do not run `manage.py check` (volumes.E004): the runner refuses the worker's secrets itself."""
    settings.VOLUMES = {**settings.VOLUMES, "JOB_ENV_ALLOW": ["HTTPS_PROXY", *SECRETS]}
    job = job_run(job_submit(workspace, cast["owner"], "python", ENV_SCRIPT.format(sandbox=""), enqueue=False).pk)
    check(job, {"HTTPS_PROXY": "http://proxy.example:3128"})
    assert "warning: VOLUMES_JOB_ENV_ALLOW names AWS_SECRET_ACCESS_KEY, DATABASE_URL, SECRET_KEY" in job.log, job.log
