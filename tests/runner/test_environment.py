"""A job's environment: nothing of the worker's but PATH, LANG and TZ, with and without the sandbox."""
from __future__ import annotations

import os

import pytest

from . import run

ENV_SCRIPT = "import os\ndef main():\n    return dict(os.environ)\n"
MINIMAL = {"PATH", "HOME", "LANG", "TZ", "TMPDIR"}


@pytest.fixture
def worker_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:5432/volumes")
    monkeypatch.setenv("SECRET_KEY", "worker-secret-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-aws-secret")


def test_an_unsandboxed_script_sees_only_the_minimal_environment_and_its_own_variables(tmp_path, worker_secrets):
    env = run("python", ENV_SCRIPT, tmp_path / "work", env={"VOLUMES_JOB_ID": "7"}).value
    assert set(env) == MINIMAL | {"VOLUMES_JOB_ID"}, sorted(env)
    assert env["PATH"] == os.environ["PATH"] and env["VOLUMES_JOB_ID"] == "7"
    assert env["HOME"].startswith(str(tmp_path / "work")) and env["TMPDIR"].startswith(str(tmp_path / "work"))
    assert "hunter2" not in repr(env) and "worker-secret" not in repr(env)


def test_an_unsandboxed_bash_script_has_no_worker_secret_either(tmp_path, worker_secrets):
    outcome = run("bash", "env\n", tmp_path / "work")
    assert outcome.error == "", outcome.log
    names = {line.split("=", 1)[0] for line in outcome.lines if "=" in line}
    assert names <= MINIMAL | {"PWD", "SHLVL", "_", "OLDPWD"}, sorted(names)


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox tests run as root (see test_sandbox.py)")
def test_a_sandboxed_script_sees_only_the_minimal_environment_and_its_own_variables(tmp_path, worker_secrets):
    env = run("python", ENV_SCRIPT, tmp_path / "work", sandbox=True, env={"VOLUMES_JOB_ID": "7"}).value
    assert set(env) == MINIMAL | {"VOLUMES_JOB_ID"}, sorted(env)
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
