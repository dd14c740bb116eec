"""The README's run command, from a fresh copy of the repository: it serves through gunicorn with DEBUG off,
static files from WhiteNoise, a Celery worker and beat, answers /healthz, and Ctrl-C leaves nothing running."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def fresh_copy(dest: Path) -> Path:
    """What a clone of this working tree holds (tracked and new files, nothing ignored), sharing .venv
    and .tools so no reinstall runs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    if (ROOT / ".tools").exists():
        (dest / ".tools").symlink_to((ROOT / ".tools").resolve())
    return dest


def session_processes(sid: int) -> dict[int, str]:
    """Every live process of the session run.sh started (its process groups are all in it)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    return found


def get(url: str, **headers: str):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.slow
def test_the_run_command_serves_through_gunicorn_with_debug_off_and_ctrl_c_stops_everything(tmp_path):
    repo = fresh_copy(tmp_path / "clone")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL",
                        "PROMETHEUS_MULTIPROC_DIR", "VOLUMES_DATA_DIR")}
    env.update(VOLUMES_DATA_DIR=str(tmp_path / "data"), PORT=str(port), VOLUMES_MONITORING_TOKEN="tok",
               VOLUMES_ADMIN_PASSWORD="pw-for-the-test")
    log = open(tmp_path / "run.log", "w+b")
    proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while b"Volumes is running at" not in (tmp_path / "run.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        status, headers, body = get(base + "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert headers.get("Server", "").startswith("gunicorn")
        status, _, body = get(base + "/healthz", Authorization="Bearer tok")
        checks = json.loads(body)["checks"]
        assert {"database", "broker"} <= set(checks) and any(name.startswith("storage ") for name in checks)
        # DEBUG is off: an unknown page is the plain 404, not Django's debug page.
        status, _, body = get(base + "/no-such-page/")
        assert status == 404 and b"URLconf" not in body
        # Static files are collected (hashed names) and served by WhiteNoise with long caching.
        status, _, page = get(base + "/login/")
        assert status == 200
        css = next(part.split('"')[0] for part in page.decode().split('href="/static/')[1:]
                   if part.split('"')[0].endswith(".css"))
        assert len(css.rsplit(".", 2)) == 3  # name.<hash>.css
        status, headers, _ = get(base + "/static/" + css)
        assert status == 200 and "max-age" in headers.get("Cache-Control", "")
        assert (tmp_path / "data" / "secret_key").exists()
        running = "\n".join(session_processes(proc.pid).values())
        assert "gunicorn" in running and "celery -A volumes_site worker" in running, running
        assert "celery -A volumes_site beat" in running and str(tmp_path / "data" / "celerybeat-schedule") in running
        assert "runserver" not in running
        from volumes_site.celery import queue_names

        assert f"-Q {','.join(queue_names())}" in running  # the worker consumes every routed queue
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            proc.wait(timeout=60)
        finally:
            left = session_processes(proc.pid)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert left == {}, left
    assert proc.returncode == 130
    # Each process stopped itself: none was killed at the time limit, and no Celery pool child was
    # terminated behind its worker's back (which made the worker start another and hang).
    output = (tmp_path / "run.log").read_text(errors="replace")
    assert "did not stop" not in output and "exited with 'signal 15" not in output, output[-3000:]


def test_the_worker_queues_include_every_queue_of_the_task_routes(settings):
    from volumes_site.celery import app, queue_names

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed and routed <= set(queue_names()) and app.conf.task_default_queue in queue_names()
