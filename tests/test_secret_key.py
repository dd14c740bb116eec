"""Secret-key rules: no known key with DEBUG off; the run command generates and keeps one."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(DJANGO_SETTINGS_MODULE="volumes_site.settings", VOLUMES_DATA_DIR=str(tmp_path / "var"),
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", CELERY_BROKER_URL="filesystem://", **extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_production_process_without_secret_key_refuses_to_start_and_says_what_to_set(tmp_path):
    result = manage(production_env(tmp_path), "check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr and "set the environment variable SECRET_KEY" in result.stderr


def test_a_celery_worker_without_secret_key_refuses_to_start(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "volumes_site", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_production_process_with_secret_key_starts(tmp_path):
    result = manage(production_env(tmp_path, SECRET_KEY="a" * 50), "check")
    assert result.returncode == 0, result.stderr


def test_an_agent_worker_needs_no_secret_key(tmp_path):
    result = manage(production_env(tmp_path), "agent_worker", "--server", "http://127.0.0.1:9", "--token", "t",
                    "--once")
    assert "SECRET_KEY" not in result.stderr
    assert "cannot reach the server at http://127.0.0.1:9" in result.stderr  # it started and tried the server


def test_with_debug_a_key_is_generated_once_under_the_data_folder_and_kept(tmp_path):
    env = production_env(tmp_path, DEBUG="true")
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    keys = [manage(env, "shell", "-c", code).stdout.strip().splitlines()[-1] for _ in range(2)]
    key_file = tmp_path / "var" / "secret_key"
    assert keys[0] == keys[1] == key_file.read_text().strip() and len(keys[0]) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "insecure" not in keys[0]


@pytest.mark.slow
def test_the_run_command_generates_a_key_on_first_start_even_with_debug_off(tmp_path):
    env = production_env(tmp_path, DEBUG="false", SECURE_SSL_REDIRECT="false", PORT="18765")
    process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "Volumes is running" not in line:
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()[-3000:]
            line = process.stdout.readline()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    key_file = tmp_path / "var" / "secret_key"
    assert len(key_file.read_text().strip()) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
