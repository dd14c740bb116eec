"""A job's pull trusts the cache's "known clean" record (the tree is exactly the generation it last synced) instead
of walking the tree, and nothing can leave that record over a tree a job or a crash changed: the pull takes it away
before the job gets the tree, and only a commit, an unchanged push or a pull that puts the generation back write it.

The hostile cases: a worker killed after its job edited the tree, a push that fails, a newer generation committed by
another worker, a setuid bit set by a job, and a hand edit of the cache between jobs (what we promise there is in
docs/scaling.md, "Known clean")."""
import os
import signal
import stat
import subprocess
import sys

import pytest

from volumes.engine.cache import WorkerCache
from volumes.models import Volume
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from ..engine.helpers import ROOT, checkout, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

KNOWN_CLEAN = "the cache was known clean, not rescanned"
WRITE = """# volume: notes data
import os
def main(text="one"):
    os.makedirs("data/sub", exist_ok=True)
    open("data/a.txt", "w").write(text)
    open("data/sub/b.txt", "w").write("b")
"""
READ = """# volume: notes data
import os
def main():
    return sorted(os.listdir("data")), open("data/a.txt").read()
"""
# Hostile: a same-size rewrite that puts the old mtime back, a new file and a new folder.
EDIT = """# volume: notes data
import os
def main():
    st = os.stat("data/a.txt")
    open("data/a.txt", "w").write("two")
    os.utime("data/a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    open("data/new.txt", "w").write("new")
    os.mkdir("data/folder")
"""


@pytest.fixture
def run(workspace, cast, cache_root, settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}

    def run(content, args=None, expect="success"):
        job = job_run(job_submit(workspace, cast["owner"], "python", content, args, enqueue=False).pk)
        assert job.status == expect, job.log
        return job

    return run


def _tree(cache_root):
    return cache_root / "acme" / "notes" / "tree"


def test_a_job_after_a_commit_an_unchanged_push_or_a_failed_job_starts_without_rescanning(run):
    assert KNOWN_CLEAN not in run(WRITE).log  # the first pull of the volume on this worker
    job = run(READ)  # after a commit
    assert KNOWN_CLEAN in job.log and job.result == [["a.txt", "sub"], "one"]
    job = run(READ)  # after an unchanged push
    assert KNOWN_CLEAN in job.log and job.result == [["a.txt", "sub"], "one"]
    run(EDIT + "    raise SystemExit('failed on purpose')\n", expect="failure")  # its changes are put back
    job = run(READ)
    assert KNOWN_CLEAN in job.log and job.result == [["a.txt", "sub"], "one"]
    assert Volume.objects.get(name="notes").generation == 1


def test_a_worker_killed_after_its_job_edited_the_tree_leaves_no_clean_record(run, workspace, cache_root, tmp_path):
    run(WRITE)
    script = tmp_path / "edit.py"
    script.write_text(EDIT)
    killed = subprocess.run(
        [sys.executable, "manage.py", "run_script", str(script), "--workspace", workspace.pk, "--user", "owner"],
        env=worker_env(VOLUMES_CACHE_DIR=cache_root, VOLUMES_CRASH_AT="job.after_script:1"), cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (_tree(cache_root) / "new.txt").exists()  # the job's edits are in the cache, never pushed
    Volume.objects.filter(name="notes").update(lease_expires_at=None)  # the killed worker's lease
    job = run(READ)
    assert KNOWN_CLEAN not in job.log
    assert job.result == [["a.txt", "sub"], "one"]  # the edits were put back, not kept nor committed
    assert Volume.objects.get(name="notes").generation == 1


def test_a_job_whose_push_fails_leaves_no_clean_record(run, settings):
    run(WRITE)
    limits = settings.VOLUMES
    settings.VOLUMES = {**limits, "MAX_FILE_SIZE": 1000}
    failed = run(EDIT + "    open('data/big.bin', 'wb').write(b'x' * 5000)\n", expect="failure")
    assert "over the limit" in failed.error
    settings.VOLUMES = limits
    job = run(READ)
    assert KNOWN_CLEAN not in job.log and job.result == [["a.txt", "sub"], "one"]
    assert Volume.objects.get(name="notes").generation == 1


def test_a_generation_another_worker_committed_is_pulled_normally(run, settings, cache_root, tmp_path):
    run(WRITE)
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": tmp_path / "other-worker"}
    run(WRITE, {"text": "two"})
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    job = run(READ)
    assert KNOWN_CLEAN not in job.log and job.result == [["a.txt", "sub"], "two"]


def test_a_hand_edit_of_the_cache_between_jobs_is_committed_as_it_is_or_put_back_once_the_record_is_removed(
        run, cache_root, tmp_path):
    """What docs/scaling.md promises: the cache belongs to the worker; a hand edit while no job runs is not seen
    by the next job's pull, and its push commits the tree exactly as it is (the hash cache never vouches for
    changed bytes). Removing the volume's `clean` file first makes the next job put the generation back."""
    run(WRITE)
    tree = _tree(cache_root)
    st = os.stat(tree / "a.txt")
    (tree / "a.txt").write_text("ONE")  # same size, same mtime: only the ctime tells
    os.utime(tree / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    job = run(READ)
    assert KNOWN_CLEAN in job.log and job.result == [["a.txt", "sub"], "ONE"]
    volume = Volume.objects.get(name="notes")
    assert volume.generation == 2  # committed as it is, under its real hash
    remote, lease, fresh, _, _ = checkout(volume, tmp_path / "fresh")
    remote.release(lease)
    assert (fresh.tree / "a.txt").read_text() == "ONE"

    (tree / "a.txt").write_text("BAD")
    (tree.parent / "clean").unlink()
    job = run(READ)
    assert KNOWN_CLEAN not in job.log and job.result == [["a.txt", "sub"], "ONE"]


def test_eviction_forgets_the_clean_record_before_it_removes_the_tree(run, cache_root, monkeypatch):
    run(WRITE)
    from volumes.engine import cache as cache_module

    real = cache_module.remove_tree

    def remove_tree(path):  # eviction killed once it removed the tree
        real(path)
        if os.path.basename(path) == "tree":
            raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "remove_tree", remove_tree)
    with pytest.raises(KeyboardInterrupt):
        WorkerCache(cache_root, 0).evict()
    monkeypatch.setattr(cache_module, "remove_tree", real)
    job = run(READ)
    assert KNOWN_CLEAN not in job.log and job.result == [["a.txt", "sub"], "one"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a job user of its own needs a root worker")
@pytest.mark.parametrize("idmap", ["auto", "off"])
def test_setuid_setgid_and_sticky_bits_a_job_sets_do_not_stay_in_the_cache(run, cache_root, monkeypatch, idmap):
    monkeypatch.setenv("VOLUMES_IDMAP", idmap)
    run(WRITE)
    run("""# volume: notes data
import os
def main():
    for name, mode in [("suid", 0o4755), ("sgid", 0o2755), ("both", 0o6777)]:
        open("data/" + name, "w").write("#!/bin/sh\\n")
        os.chmod("data/" + name, mode)
    os.mkdir("data/sticky")
    os.chmod("data/sticky", 0o1777)
    os.chmod("data/sub", 0o2755)
""")
    tree = _tree(cache_root)
    special = {str(p.relative_to(tree)): oct(p.lstat().st_mode & 0o7000) for p in [tree, *tree.rglob("*")]
               if p.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)}
    assert special == {}
    job = run("# volume: notes data\nimport os\ndef main():\n"
              "    return {n: os.stat('data/' + n).st_mode & 0o7777 for n in ('suid', 'sgid', 'both', 'sticky', 'sub')}\n")
    assert KNOWN_CLEAN in job.log
    assert job.result == {"suid": 0o755, "sgid": 0o755, "both": 0o777, "sticky": 0o777, "sub": 0o755}


# Hostile: folders nested past the system's limit on a whole path in the cache, made by relative steps.
TOO_DEEP = """# volume: notes data
import os
def main(fail=False):
    os.chdir("data")
    for _ in range(17):
        os.mkdir("\\u00e9" * 127)
        os.chdir("\\u00e9" * 127)
    open("leaf.txt", "w").write("lost in the deep")
    if fail:
        raise SystemExit("failed on purpose")
"""


@pytest.mark.parametrize("fail", [False, True])
def test_folders_nested_past_the_systems_path_limit_never_brick_the_volume(run, fail):
    run(WRITE)
    job = run(TOO_DEEP, {"fail": fail}, expect="failure" if fail else "success")
    if not fail:
        assert "the cache cannot hold it" in job.log
    job = run(READ)  # the next job's pull puts the tree back to the generation
    assert job.result == [["a.txt", "sub"] if fail else ["a.txt", "sub", "\u00e9" * 127], "one"]
    run(WRITE.replace('main(text="one")', 'main(text="two")'))
    assert run(READ).result[1] == "two"


def test_the_hash_cache_is_loaded_while_the_script_runs_so_the_job_s_end_does_not_wait_for_it(run, monkeypatch):
    """The push at a job's end needs the volume's hash cache; the worker loads it while it waits on the script, and
    the push finds it in memory. What the job changed is still found and committed."""
    import threading
    import time

    from volumes.engine import cache as cache_module
    from volumes.engine import hashcache

    run(WRITE)
    loads = []
    real = hashcache.load
    monkeypatch.setattr(hashcache, "load", lambda *a, **k: loads.append(
        (threading.current_thread().name, time.time())) or real(*a, **k))
    cache_module._MEMO.clear()  # a new worker process: nothing parsed yet
    job = run(WRITE.replace("def main(", "import time\ndef main(").replace(
        'open("data/sub/b.txt", "w").write("b")', 'open("data/sub/b.txt", "w").write("b")\n    time.sleep(0.5)'),
        {"text": "changed"})
    assert [name for name, _ in loads] == ["preload-hash-caches"]
    assert job.script_started_at.timestamp() <= loads[0][1] <= job.script_finished_at.timestamp()
    assert run(READ).result == [["a.txt", "sub"], "changed"]
