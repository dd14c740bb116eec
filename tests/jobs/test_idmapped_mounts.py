"""A root worker gives a job (a job uid of its own, or the sandbox's 65534) its volumes through idmapped mounts:
the job sees the worker's files as its own and its writes land as the worker's on disk, with nothing chowned, so
untouched files keep their ctime and the push hashes only what changed. VOLUMES_IDMAP=off (or a kernel or
filesystem without idmapped mounts) chowns the trees there and back instead; both give the same results."""
import os

import pytest

from volumes.models import Volume
from volumes.permissions import set_share
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker changes the job's user")

IDMAP_LINE = "idmapped mounts show them as the job user's (nothing chowned)"
CHOWN_LINE = "chowned to the job user for the run and back after it"

WORK = """# volume: big data
import errno, os

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]

def main():
    st = os.stat("data/f1.txt")
    seen = {"uid": os.getuid(), "owner": [st.st_uid, st.st_gid], "root": os.stat("data").st_uid}
    open("data/f0.txt", "w").write("changed")
    open("data/new.txt", "w").write("new")
    os.remove("data/f2.txt")
    os.mkdir("data/sub")
    open("data/sub/deep.txt", "w").write("deep")
    open("data/suid", "w").write("#!/bin/sh\\n")
    seen["chmod_suid"] = attempt(lambda: os.chmod("data/suid", 0o4755))
    seen["chown_root"] = attempt(lambda: os.chown("data/new.txt", 0, 0))
    seen["chown_other"] = attempt(lambda: os.chown("data/new.txt", 12345, 12345))
    seen["new_owner"] = os.stat("data/new.txt").st_uid
    return seen
"""


def _tree(cache_root, name):
    return cache_root / "acme" / name / "tree"


def _seed(workspace, cast, header, name="big"):
    fill = (header + f"# volume: {name} data\ndef main():\n    for i in range(20):\n"
            "        open(f'data/f{i}.txt', 'w').write(f'file {i:02d}')\n")
    job = job_run(job_submit(workspace, cast["owner"], "python", fill, enqueue=False).pk)
    assert job.status == "success", job.log
    return job


@pytest.mark.parametrize("idmap", ["auto", "off"])
@pytest.mark.parametrize("sandbox", [False, True])
def test_the_job_owns_its_volume_and_the_worker_owns_the_result(workspace, cast, settings, cache_root, monkeypatch,
                                                                 idmap, sandbox):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    monkeypatch.setenv("VOLUMES_IDMAP", idmap)
    header = "# sandbox\n" if sandbox else ""
    seed = _seed(workspace, cast, header)
    assert (IDMAP_LINE if idmap == "auto" else CHOWN_LINE) in seed.log
    tree = _tree(cache_root, "big")
    ctimes = {name: os.lstat(tree / name).st_ctime_ns for name in (f"f{i}.txt" for i in range(3, 20))}

    job = job_run(job_submit(workspace, cast["owner"], "python", header + WORK, enqueue=False).pk)
    assert job.status == "success", job.log
    seen = job.result
    uid = 65534 if sandbox else seen["uid"]
    assert seen["uid"] == uid and seen["owner"] == [uid, uid] and seen["root"] == uid
    refused = ("EPERM", "EOVERFLOW")  # EOVERFLOW: an id the idmapped mount does not map
    assert seen["chown_root"] in refused and seen["chown_other"] in refused and seen["new_owner"] == uid
    if idmap == "auto":
        assert IDMAP_LINE in job.log and CHOWN_LINE not in job.log
        # Nothing was chowned: the 17 untouched files keep their ctime.
        assert {name: os.lstat(tree / name).st_ctime_ns for name in ctimes} == ctimes
    else:
        assert CHOWN_LINE in job.log and "VOLUMES_IDMAP=off" in job.log and IDMAP_LINE not in job.log
    assert str(cache_root) not in open("/proc/1/mountinfo").read()  # no mount left behind, none reached the host
    # Both ways the push hashes only the 4 files the job wrote (f0, new, sub/deep, suid).
    assert "volume big: 4 files hashed to find what changed" in job.log
    assert Volume.objects.get(name="big").generation == 2
    on_disk = [tree, *tree.rglob("*")]
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in on_disk} == {(0, 0)}  # the worker's, not the job's
    assert (tree.parent.stat().st_mode & 0o777, tree.parent.stat().st_uid) == (0o700, 0)  # only the worker gets in
    check = job_run(job_submit(workspace, cast["owner"], "python", header + (
        "# volume: big data\nimport os\ndef main():\n"
        "    return sorted(os.listdir('data')), open('data/f0.txt').read(), open('data/sub/deep.txt').read(),"
        " os.stat('data/suid').st_mode & 0o7777\n"), enqueue=False).pk)
    names = sorted([f"f{i}.txt" for i in range(20) if i != 2] + ["new.txt", "sub", "suid"])
    assert check.result == [names, "changed", "deep", 0o755 if seen["chmod_suid"] == "ok" else 0o644], check.log


@pytest.mark.parametrize("idmap", ["auto", "off"])
@pytest.mark.parametrize("sandbox", [False, True])
def test_a_read_only_volume_refuses_writes(workspace, cast, settings, cache_root, monkeypatch, idmap, sandbox):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    monkeypatch.setenv("VOLUMES_IDMAP", idmap)
    header = "# sandbox\n" if sandbox else ""
    _seed(workspace, cast, header, "shared")
    set_share(Volume.objects.get(name="shared"), cast["reader"], "read")
    tree = _tree(cache_root, "shared")
    ctime = os.lstat(tree / "f5.txt").st_ctime_ns
    job = job_run(job_submit(workspace, cast["reader"], "python", header + (
        "# volume: shared ref\nimport os\ndef main():\n    mine = os.stat('ref/f1.txt').st_uid == os.getuid()\n"
        "    return mine, open('ref/f1.txt').read()\n"), enqueue=False).pk)
    assert job.status == "success" and job.result == [True, "file 01"], job.log
    job = job_run(job_submit(workspace, cast["reader"], "python", header + (
        "# volume: shared ref\ndef main():\n    open('ref/f1.txt', 'w').write('mine now')\n"), enqueue=False).pk)
    assert job.status == "failure" and "[Errno 30] Read-only file system" in job.error, job.log
    assert Volume.objects.get(name="shared").generation == 1
    assert (tree / "f1.txt").read_text() == "file 01"
    if idmap == "auto":
        assert os.lstat(tree / "f5.txt").st_ctime_ns == ctime


def test_a_filesystem_without_idmapped_mounts_falls_back_to_chown(workspace, cast, settings, tmp_path):
    """ramfs does not support idmapped mounts: the job runs all the same, with the trees chowned, and says why."""
    import subprocess

    cache = tmp_path / "ramfs-cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "volumes-test", str(cache)], check=True)
    try:
        settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache}
        job = job_run(job_submit(workspace, cast["owner"], "python", (
            "# volume: ram data\nimport os\ndef main():\n    open('data/a.txt', 'w').write('a')\n"
            "    return os.stat('data/a.txt').st_uid == os.getuid()\n"), enqueue=False).pk)
        assert job.status == "success" and job.result is True, job.log
        assert f"{CHOWN_LINE} (no idmapped mounts: [Errno 22] mount_setattr" in job.log
        tree = _tree(cache, "ram")
        assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [tree, *tree.rglob("*")]} == {(0, 0)}
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=True)
