"""Kill a pushing process at named crash points and at random moments: the volume is always one
whole committed generation, never a mix, and a crashed holder's lease expires for the next one."""
import random
import signal
import subprocess
import sys
import time

import pytest

from volumes.engine import leases
from volumes.models import Volume
from volumes.services.gc import gc_volume

from .helpers import ROOT, checkout, commit, worker_env

FILES = 40


def seed(tree):
    (tree / "shared.txt").write_text("written by generation 1")
    (tree / "gone.txt").write_text("deleted by generation 2")


def assert_whole_generation(volume, tmp_path):
    """The volume is exactly generation 1 or exactly generation 2, and pulls completely."""
    leases.Volume.objects.filter(pk=volume.pk).update(lease_expires_at=None)  # the killed holder's lease
    volume.refresh_from_db()
    _, lease, cached, manifest, _ = checkout(volume, tmp_path / f"check-{time.monotonic_ns()}")
    leases.release(lease)
    names = {p.name for p in cached.tree.iterdir()}
    if volume.generation == 1:
        assert names == {"shared.txt", "gone.txt"}
        assert (cached.tree / "shared.txt").read_text() == "written by generation 1"
    else:
        assert volume.generation == 2
        assert names == {"shared.txt"} | {f"new-{i}.bin" for i in range(FILES)}
        assert (cached.tree / "shared.txt").read_text() == "written by generation 2"
        assert all((cached.tree / f"new-{i}.bin").stat().st_size == 20_012 for i in range(FILES))
    assert volume.file_count == manifest.file_count and volume.size_bytes == manifest.size_bytes
    return volume.generation


def run_pusher(volume, tmp_path, **env):
    return subprocess.Popen(
        [sys.executable, "tests/engine/pusher.py", str(volume.pk), str(tmp_path / "pusher-cache"), str(FILES)],
        env=worker_env(VOLUMES_TRANSFER_THREADS=2, **env), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "crash_at, committed",
    [
        ("push.after_blob_upload:1", False),
        ("push.after_blob_upload:20", False),
        ("push.after_manifest_write:1", False),
        ("commit.inside_transaction:1", False),
        ("push.after_commit:1", True),
        ("pull.after_file:1", False),
    ],
)
def test_a_push_killed_at_a_crash_point_leaves_one_whole_generation(volume, tmp_path, crash_at, committed):
    commit(volume, tmp_path / "seed", seed)
    if crash_at.startswith("pull."):
        commit(volume, tmp_path / "seed", lambda t: (t / "more.txt").write_text("x"))
        commit(volume, tmp_path / "seed", lambda t: (t / "more.txt").unlink())
    proc = run_pusher(volume, tmp_path, VOLUMES_CRASH_AT=crash_at)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    base_generation = 3 if crash_at.startswith("pull.") else 1
    volume.refresh_from_db()
    assert volume.generation == base_generation + (1 if committed else 0)
    if not crash_at.startswith("pull."):
        assert assert_whole_generation(volume, tmp_path) == (2 if committed else 1)
    # A crash leaves only garbage that GC removes; kept generations still pull afterwards.
    leases.Volume.objects.filter(pk=volume.pk).update(lease_expires_at=None)
    assert gc_volume(volume) is not None
    checkout(volume, tmp_path / "after-gc")


@pytest.mark.django_db(transaction=True)
def test_random_kills_during_pushes_never_leave_a_half_written_volume(volume, tmp_path):
    commit(volume, tmp_path / "seed", seed)
    rng = random.Random(7)
    outcomes = []
    for attempt in range(6):
        proc = run_pusher(volume, tmp_path / f"run-{attempt}")
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        generation = assert_whole_generation(volume, tmp_path)
        outcomes.append(generation)
        if generation == 2:
            break
    assert outcomes  # each attempt checked both states are whole


@pytest.mark.django_db(transaction=True)
def test_a_killed_holders_lease_expires_and_the_next_holder_proceeds(volume, tmp_path):
    commit(volume, tmp_path / "seed", seed)
    proc = run_pusher(volume, tmp_path, VOLUMES_CRASH_AT="push.after_blob_upload:1", PUSH_TTL="1")
    proc.wait(timeout=60)
    started = time.monotonic()
    lease = leases.acquire(volume.pk, "next", wait=10)
    assert time.monotonic() - started < 5
    leases.release(lease)
    assert Volume.objects.get(pk=volume.pk).generation == 1
