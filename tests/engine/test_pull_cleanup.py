"""A pull leaves the cache exactly the generation, whatever a read-only or failed job left behind."""
from __future__ import annotations

import os
import stat

import pytest

from volumes.engine import sync
from volumes.engine.cache import WorkerCache, remove_tree

from .helpers import checkout, commit, tree_listing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _cleanup(tmp_path):
    """pytest's own clean-up of old temporary folders recurses; leave nothing deep behind for it."""
    yield
    for child in tmp_path.iterdir():
        remove_tree(child)


def _deep(root, depth: int) -> None:
    path = str(root)
    os.mkdir(path)
    for _ in range(depth):  # no recursion anywhere (os.makedirs recurses)
        path += "/d"
        os.mkdir(path)
    open(path + "/leaf", "w").close()


def _litter(tree) -> None:
    os.mkfifo(tree / "pipe")
    os.mknod(tree / "sock", stat.S_IFSOCK | 0o600)
    with open(os.path.join(os.fsencode(tree), b"latin1-\xe9"), "w") as fh:
        fh.write("x")
    (tree / "back\\slash").write_text("x")
    os.mkdir(tree / "locked")
    (tree / "locked" / "f").write_text("x")
    os.chmod(tree / "locked", 0)
    _deep(tree / "deep", 1200)


def test_a_pull_removes_fifos_sockets_hostile_names_and_deep_trees(volume, cache_root):
    commit(volume, cache_root, lambda tree: (tree / "kept.txt").write_text("kept"))
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    try:
        _litter(cached.tree)
        sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    assert sorted(os.listdir(cached.tree)) == ["kept.txt"]


def test_a_fifo_where_the_next_generation_has_a_folder_does_not_break_later_pulls(volume, cache_root, tmp_path):
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    os.mkfifo(cached.tree / "x")  # left by a read-only job on this worker
    remote.release(lease)

    def mutate(tree):
        os.mkdir(tree / "x")
        (tree / "x" / "inside.txt").write_text("inside")

    commit(volume, tmp_path / "elsewhere", mutate)  # another worker makes x a folder
    for _ in range(2):
        remote, lease, cached, base, _ = checkout(volume, cache_root)
        remote.release(lease)
        assert tree_listing(cached.tree)["x/inside.txt"][1] == b"inside"


def test_removal_and_disk_usage_survive_depth_and_missing_permissions(tmp_path):
    _deep(tmp_path / "deep", 1500)
    os.chmod(tmp_path / "deep" / "d", 0)
    cache = WorkerCache(tmp_path / "cache", 10**12)
    cached = cache.volume("acme", "v")
    cached.prepare()
    _deep(cached.tree / "deep", 1500)
    assert cached.disk_usage() >= 0
    remove_tree(tmp_path / "deep")
    assert not (tmp_path / "deep").exists()
    cache.max_bytes = -1  # evict everything
    assert cache.evict() == [cached.root]


NOBODY = 65534


def test_a_worker_that_is_not_root_removes_what_a_job_locked_up(tmp_path):
    """As root every folder is open anyway; agents and small installs run as a plain user."""
    import subprocess
    import tempfile

    from .helpers import ROOT

    base = tempfile.mkdtemp(prefix="volumes-nobody-")
    os.chmod(base, 0o755)
    try:
        victim = os.path.join(base, "tree")
        _deep(victim, 1100)
        os.mkdir(os.path.join(victim, "readonly"))
        open(os.path.join(victim, "readonly", "f"), "w").close()
        subprocess.run(["chown", "-R", "-h", f"{NOBODY}:{NOBODY}", base], check=True)
        os.chmod(os.path.join(victim, "readonly"), 0o500)
        os.chmod(os.path.join(victim, "d"), 0)
        os.chmod(os.path.join(victim, "d", "d", "d"), 0o100)
        code = ("import os, sys\nfrom volumes.engine.cache import remove_tree\nassert os.geteuid() != 0\n"
                "remove_tree(os.path.join(sys.argv[1], 'readonly', 'f'))\n"
                "assert not os.path.exists(os.path.join(sys.argv[1], 'readonly', 'f'))\n"
                "assert os.stat(os.path.join(sys.argv[1], 'readonly')).st_mode & 0o777 == 0o500\n"
                "remove_tree(sys.argv[1])\nprint('removed')\n")
        done = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                               "/usr/bin/python3", "-c", code, victim],
                              env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}, cwd=base,
                              capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == "removed", done.stderr[-2000:]
        assert not os.path.exists(victim)
    finally:
        remove_tree(base)


def test_eviction_sweeps_private_copies_that_no_job_uses_any_more(tmp_path):
    cache = WorkerCache(tmp_path / "cache", 10**12)
    left = cache.private_volume()  # a job killed while it used it
    left.prepare()
    (left.tree / "f").write_text("x")
    with cache.checkout("acme", "v", wait=0) as shared:
        with cache.checkout("acme", "v", wait=0, log=lambda _: None) as private:
            assert private.root.parent == tmp_path / "cache" / ".private"
            private.prepare()
            cache.evict()
            assert private.root.exists() and shared.root.exists()
    assert not left.root.exists()
    assert not private.root.exists()
