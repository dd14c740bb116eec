"""Unsandboxed jobs on a root worker run as a job uid of their own: they use their volumes, but cannot read
the worker's environment, its data folder, other cached volumes or other jobs' folders, and nothing they
start outlives them."""
import os
import tempfile
import time

import pytest

from volumes.models import Volume
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from ..runner import processes_with

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker changes the job's user")

SNOOP = """# volume: mine data
import errno, os, subprocess

def attempt(fn):
    try:
        return fn()
    except OSError as error:
        return errno.errorcode[error.errno]

def main(other_tree, data_dir, cache_root, other_job, marker, storage=""):
    with open("data/new.txt", "w") as out:
        out.write("mine")
    subprocess.Popen(["sleep", marker], start_new_session=True)  # left running, outside the process group
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "own": sorted(os.listdir("data")),
        "worker_environ": attempt(lambda: open(f"/proc/{os.getppid()}/environ").read()[:20]),
        "data_dir": attempt(lambda: sorted(os.listdir(data_dir))),
        "cache_root": attempt(lambda: sorted(os.listdir(cache_root))),
        "other_volume": attempt(lambda: open(os.path.join(other_tree, "secret.txt")).read()),
        "other_job": attempt(lambda: os.listdir(other_job)),
        "write_root": attempt(lambda: open("/etc/volumes-job-probe", "w")),
        "storage": attempt(lambda: sorted(os.listdir(storage))) if storage else None,
    }
"""


def searchable(path):
    """Let other users through the folders above `path` (pytest's are 0700), so only our covering hides it."""
    for parent in reversed(path.parents):
        parent.chmod(parent.stat().st_mode | 0o001)


def test_an_unsandboxed_job_runs_as_its_own_user_and_reaches_only_its_volumes(workspace, cast, settings, cache_root,
                                                                              storage_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    searchable(cache_root / "x")
    (storage_root / "blob-of-another-workspace").write_text("theirs")
    data_dir = settings.VOLUMES["DATA_DIR"]
    (data_dir / "volumes-test-secret").write_text("worker only")
    other_tree = cache_root / "beta" / "secret-volume" / "tree"
    other_tree.mkdir(parents=True)
    (other_tree / "secret.txt").write_text("beta's data")
    other_job = tempfile.mkdtemp(prefix="job-999-")
    marker = f"63.{time.time_ns() % 10**9}"
    try:
        job = job_run(job_submit(workspace, cast["owner"], "python", SNOOP, {
            "other_tree": str(other_tree), "data_dir": str(data_dir), "cache_root": str(cache_root),
            "other_job": other_job, "marker": marker, "storage": str(storage_root)}, enqueue=False).pk)
    finally:
        os.rmdir(other_job)
    assert job.status == "success", job.log
    seen = job.result
    assert 1_900_000_000 <= seen["uid"] < 1_900_001_000 and seen["gid"] == seen["uid"] and seen["groups"] == []
    assert seen["own"] == ["new.txt"]
    assert seen["worker_environ"] == "EACCES"
    assert seen["data_dir"] == []  # covered: nothing of the worker's is there
    assert seen["cache_root"] == [] and seen["storage"] == []  # covered as well
    assert seen["other_volume"] == "ENOENT"
    assert seen["other_job"] == "EACCES"
    assert seen["write_root"] == "EACCES"
    assert processes_with(marker) == []  # the daemon it left was killed with the job
    assert Volume.objects.get(name="mine").generation == 1
    tree = cache_root / "acme" / "mine" / "tree"
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [tree, *tree.rglob("*")]} == {(0, 0)}  # handed back


@pytest.mark.django_db(transaction=True)
def test_two_jobs_at_once_get_different_users(workspace, cast, settings, cache_root):
    import threading

    from django.db import connection

    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    script = "# volume: {name} data\nimport os, time\ndef main():\n    time.sleep(1.5)\n    return os.getuid()\n"
    jobs = [job_submit(workspace, cast["owner"], "python", script.format(name=name), enqueue=False)
            for name in ("first", "second")]
    results = {}

    def run(job):
        try:
            results[job.pk] = job_run(job.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    uids = {job.result for job in results.values()}
    assert all(job.status == "success" for job in results.values())
    assert len(uids) == 2 and 0 not in uids


def test_a_sandboxed_job_cannot_read_another_workspaces_cached_volume_or_the_workers_settings(
        workspace, cast, settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    data_dir = settings.VOLUMES["DATA_DIR"]
    (data_dir / "volumes-test-secret").write_text("worker only")
    other_tree = cache_root / "beta" / "secret-volume" / "tree"
    other_tree.mkdir(parents=True)
    (other_tree / "secret.txt").write_text("beta's data")
    script = "# sandbox\n" + SNOOP.replace("    subprocess.Popen", "    # subprocess.Popen")
    job = job_run(job_submit(workspace, cast["owner"], "python", script, {
        "other_tree": str(other_tree), "data_dir": str(data_dir), "cache_root": str(cache_root),
        "other_job": "/tmp/nothing", "marker": "0"}, enqueue=False).pk)
    assert job.status == "success", job.log
    seen = job.result
    assert seen["uid"] == 65534 and seen["own"] == ["new.txt"]
    assert seen["other_volume"] == seen["data_dir"] == seen["cache_root"] == "ENOENT"
    assert seen["worker_environ"] in ("ENOENT", "EACCES")  # the worker is not in the sandbox's PID namespace


@pytest.mark.parametrize("sandbox", [False, True])
def test_files_a_job_did_not_touch_keep_their_hashes_and_a_sneaky_rewrite_is_still_committed(
        workspace, cast, settings, cache_root, sandbox):
    """Running as another user chowns the volume there and back (new ctimes): untouched files must not be
    rehashed on the next scan, and a file rewritten with the same size and restored mtime must still count."""
    from volumes.engine.cache import CachedVolume
    from volumes.storage.localfiles import stat_key as _stat_key

    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    header = ("# sandbox\n" if sandbox else "") + "# volume: keep data\nimport os\n"
    fill = header + "def main():\n    for i in range(20):\n        open(f'data/f{i}.txt', 'w').write(f'file {i:02d}')\n"
    sneaky = header + (
        "def main():\n    st = os.stat('data/f0.txt')\n    open('data/f0.txt', 'w').write('FILE 00')\n"
        "    os.utime('data/f0.txt', ns=(st.st_atime_ns, st.st_mtime_ns))\n")
    read = header + "def main():\n    return open('data/f0.txt').read()\n"
    for script in (fill, sneaky):
        job = job_run(job_submit(workspace, cast["owner"], "python", script, enqueue=False).pk)
        assert job.status == "success", job.log
    assert Volume.objects.get(name="keep").generation == 2  # the same-size, same-mtime rewrite was committed
    assert "volume keep: 1 file hashed to find what changed" in job.log  # f0 only, not the 19 untouched ones
    entry = cache_root / "acme" / "keep"
    hashes = CachedVolume(entry).load_hashes()
    current = {path: _stat_key(os.lstat(entry / "tree" / path)) for path in hashes}
    assert all(hashes[path][:5] == current[path] for path in hashes)  # the next job needs no rehashing either
    assert job_run(job_submit(workspace, cast["owner"], "python", read, enqueue=False).pk).result == "FILE 00"


@pytest.mark.parametrize("language,script", [
    ("bash", "# volume: langs data\necho $(id -u) > data/bash.txt\ncat data/bash.txt\n"),
    ("typescript", "// volume: langs data\nimport fs from 'node:fs';\nimport process from 'node:process';\n"
                   "export function main() {\n  fs.writeFileSync('data/ts.txt', String(process.getuid()));\n"
                   "  return process.getuid();\n}\n"),
])
def test_bash_and_typescript_jobs_run_as_the_job_user_too(workspace, cast, settings, cache_root, language, script):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    job = job_run(job_submit(workspace, cast["owner"], language, script, enqueue=False).pk)
    assert job.status == "success", job.log
    assert 1_900_000_000 <= int(job.result) < 1_900_001_000
    assert Volume.objects.get(name="langs").generation == 1


@pytest.mark.django_db(transaction=True)
def test_a_root_worker_without_cap_sys_admin_runs_the_job_as_itself_and_says_so(workspace, cast, tmp_path):
    """As in a default Docker container: root, but no mount namespace; `run_script` is the worker here."""
    import subprocess
    import sys

    from ..engine.helpers import ROOT, worker_env

    script = tmp_path / "who.py"
    script.write_text("import os\ndef main():\n    return os.getuid()\n")
    env = worker_env(VOLUMES_CACHE_DIR=tmp_path / "cache")
    command = [sys.executable, "manage.py", "run_script", str(script), "--workspace", "acme", "--user", "owner"]
    plain = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert 1_900_000_000 <= int(plain.stdout.strip().splitlines()[-1]) < 1_900_001_000
    assert "cannot give the job a user of its own" not in plain.stderr
    boxed = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--", *command],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert boxed.returncode == 0, boxed.stderr
    assert boxed.stdout.strip().splitlines()[-1] == "0"
    assert "cannot give the job a user of its own (it is root without CAP_SYS_ADMIN" in boxed.stderr
