"""Report-card figures for what a job can do to its volumes: fail half-way through several volumes,
leave names no volume can hold, set setuid bits. Each runs real jobs in this process (the Celery path)."""
from __future__ import annotations

import itertools
import json
import os
import stat

import pytest

from volumes.engine import sync
from volumes.engine.cache import WorkerCache, remove_tree
from volumes.engine.manifest import path_problem
from volumes.engine.remote import DirectRemote
from volumes.exceptions import StorageUnavailable
from volumes.models import Job, Volume
from volumes.services import files
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from .report import figure, scale

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ("alpha", "beta", "gamma")
FOLDER = {"alpha": "a", "beta": "b", "gamma": "c"}
THREE = """# volume: alpha a
# volume: beta b
# volume: gamma c
def main(big="", tag=""):
    for folder in ("a", "b", "c"):
        open(folder + "/note.txt", "w").write(tag)
    if big:
        open(big + "/big.bin", "w").write("x" * 5000)
"""


@pytest.fixture
def run(workspace, cast, cache_root, settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}

    def run(content, args=None) -> Job:
        return job_run(job_submit(workspace, cast["owner"], "python", content, args, enqueue=False).pk)

    return run


def _generations() -> dict[str, int]:
    return dict(Volume.objects.filter(name__in=NAMES).values_list("name", "generation"))


def test_a_job_failing_on_any_of_its_volumes_commits_none_of_them(run, workspace, monkeypatch):
    real_prepare, real_upload = sync.push_prepare, DirectRemote.upload_blob
    fault: dict = {}

    def prepare(remote, lease, *args, **kwargs):
        result = real_prepare(remote, lease, *args, **kwargs)
        if fault.get("volume") == lease.volume_name:
            if fault["cause"] == "lost lease":  # another holder took the lease over meanwhile
                Volume.objects.filter(pk=lease.volume_id).update(lease_token=lease.token + 1)
            elif fault["cause"] == "conflict":  # the volume moved on meanwhile
                Volume.objects.filter(pk=lease.volume_id).update(generation=lease.generation + 7)
        return result

    def upload(self, lease, digest, path, hashed_as=None):
        if fault.get("cause") == "storage error" and fault.get("volume") == lease.volume_name:
            raise StorageUnavailable("test storage", "the upload was refused")
        return real_upload(self, lease, digest, path, hashed_as)

    monkeypatch.setattr(sync, "push_prepare", prepare)
    monkeypatch.setattr(DirectRemote, "upload_blob", upload)
    causes = ["size limit", "storage error", "lost lease", "conflict"]
    cases = list(itertools.product(causes, NAMES))[: scale(12, 12)] * scale(1, 3)
    partial = jobs = 0
    assert run(THREE, {"tag": "seed"}).status == "success"
    for n, (cause, volume) in enumerate(cases):
        Volume.objects.filter(name__in=NAMES).update(lease_expires_at=None)  # a taken-over lease of the last round
        fault.clear()
        fault.update(cause=cause, volume=volume)
        workspace.max_volume_size = 1000 if cause == "size limit" else None
        workspace.save()
        before = _generations()
        job = run(THREE, {"tag": f"round {n}", "big": FOLDER[volume] if cause == "size limit" else ""})
        if cause == "conflict":  # put back the pointer the test itself moved
            Volume.objects.filter(name=volume).update(generation=before[volume])
        after = _generations()
        moved = {name for name in NAMES if after[name] != before[name]}
        jobs += 1
        partial += bool(moved) and moved != set(NAMES)
        assert job.status == "failure", (cause, volume, job.log)
        assert not moved, (cause, volume, moved, job.log)
    fault.clear()
    workspace.max_volume_size = None
    workspace.save()
    assert run(THREE, {"tag": "last"}).status == "success"
    figure("engine", "multi-volume failure: partial commits", partial, unit=f"of {jobs} failing jobs", target="0",
           ok=partial == 0)
    assert partial == 0


HOSTILE = r'''# volume: hostile data
import os

def main():
    names = [f"ctl{chr(c)}name" for c in list(range(1, 32)) + [0x7f]]
    names += ["report\\2024.csv", "a\\b\\c", "\\leading", "trailing\\"]
    for name in names:
        open(os.path.join("data", name), "w").write("x")
    for raw in [b"latin1-\xe9.txt", b"\xff\xfe", b"half-\xc3.txt"]:
        open(os.path.join(os.fsencode("data"), raw), "w").write("x")
    os.mkdir("data/win\\folder")
    open("data/win\\folder/inside.txt", "w").write("x")
    path = "data/deep"
    for _ in range(300):
        os.mkdir(path)
        path += "/d"
    os.mkdir(path)
    open("data/fine.txt", "w").write("fine")
    return len(names) + 3 + 1 + 1
'''


def test_names_no_volume_can_hold_are_never_committed(run, tmp_path, storage_root):
    job = run(HOSTILE)
    assert job.status == "success", job.log
    volume = Volume.objects.get(name="hostile")
    manifest = files.manifest_of(volume)
    committed = [p for p in manifest.entries if path_problem(p) or "\\" in p or "latin1" in p]
    assert "fine.txt" in manifest.entries
    skipped_lines = [line for line in job.log.splitlines() if "skipped" in line and "cannot hold it" in line]
    assert len(skipped_lines) >= job.result, job.log
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "another worker")
    try:
        cached = WorkerCache(tmp_path / "other", 10**12).volume(volume.workspace_id, volume.name)
        sync.pull(remote, lease, cached)  # every other worker can still pull it
    finally:
        remote.release(lease)
    figure("engine", "hostile names committed", len(committed), unit=f"of {job.result} created", target="0",
           ok=not committed)
    assert not committed, committed
    for root in (tmp_path / "other", ):
        remove_tree(root)


SETUID = """# volume: tools data
import os

def main():
    for name, mode in [("suid", 0o4755), ("sgid", 0o2755), ("both", 0o6777), ("plain", 0o755)]:
        open("data/" + name, "w").write("#!/bin/sh\\n")
        os.chmod("data/" + name, mode)
    os.mkdir("data/sticky")
    os.chmod("data/sticky", 0o1777)
"""


def test_setuid_setgid_and_sticky_bits_are_never_restored(run, tmp_path, storage_root):
    assert run(SETUID).status == "success"
    volume = Volume.objects.get(name="tools")
    # An older version (or a forged agent manifest) left the bits in storage: set them in the stored copy.
    from volumes.engine import manifest_store
    from volumes.storage.factory import store_for_storage

    doc = json.loads(manifest_store.read_bytes(store_for_storage(volume.storage), volume.manifest_key))
    for row in doc["entries"]:
        row["mode"] |= 0o7000
    (storage_root / volume.manifest_key).write_bytes(json.dumps(doc).encode())  # as format 1, which still reads
    files._load_manifest.cache_clear()
    restored = checked = 0
    for round_ in range(scale(2, 5)):
        remote = DirectRemote()
        lease = remote.acquire(volume.workspace_id, volume.name, f"worker {round_}")
        try:
            cached = WorkerCache(tmp_path / f"w{round_}", 10**12).volume(volume.workspace_id, volume.name)
            sync.pull(remote, lease, cached)
        finally:
            remote.release(lease)
        for dirpath, dirnames, filenames in os.walk(cached.tree):
            for name in dirnames + filenames:
                checked += 1
                restored += bool(os.lstat(os.path.join(dirpath, name)).st_mode & (stat.S_ISUID | stat.S_ISGID
                                                                                  | stat.S_ISVTX))
    figure("engine", "setuid/setgid/sticky bits restored", restored, unit=f"of {checked} entries pulled",
           target="0", ok=restored == 0)
    assert restored == 0
