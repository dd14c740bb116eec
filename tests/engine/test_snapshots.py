"""Readers' shared snapshots in the worker cache (engine/cache.py): filled once, whole or not at all, counted in
the cache's size, evicted least recently used but never while a job reads them, superseded ones removed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import Manifest


def filler(data: bytes, calls: list | None = None, key: str = "k1"):
    def fill(volume):
        if calls is not None:
            calls.append(volume.root)
        volume.prepare()
        (volume.tree / "model.bin").write_bytes(data)
        volume.save_synced(key, Manifest())
        return "filled"
    return fill


def test_a_snapshot_is_filled_once_and_then_reused(tmp_path):
    cache = WorkerCache(tmp_path, 10**9)
    calls = []
    with cache.snapshot("ws", "Models", 1, "k1", filler(b"x" * 100, calls)) as (volume, filled):
        assert filled == "filled" and (volume.tree / "model.bin").read_bytes() == b"x" * 100
    with cache.snapshot("ws", "models", 1, "k1", filler(b"y", calls)) as (again, filled):
        assert filled is None and again.root == volume.root and (again.tree / "model.bin").read_bytes() == b"x" * 100
    assert len(calls) == 1


def test_a_failed_fill_leaves_nothing_and_the_next_reader_fills_it(tmp_path):
    cache = WorkerCache(tmp_path, 10**9)

    def broken(volume):
        volume.prepare()
        (volume.tree / "half").write_bytes(b"h")
        raise OSError("storage went away")

    with pytest.raises(OSError), cache.snapshot("ws", "models", 1, "k1", broken):
        pass
    assert [s.volume.root.exists() for s in cache.snapshots()] == [False]
    assert not list((tmp_path / ".snapshots" / "ws" / "models").glob("*.fill-*"))
    with cache.snapshot("ws", "models", 1, "k1", filler(b"whole")) as (volume, filled):
        assert filled == "filled" and sorted(p.name for p in volume.tree.iterdir()) == ["model.bin"]


def test_a_snapshot_whose_recorded_manifest_is_not_the_pins_is_filled_again(tmp_path):
    cache = WorkerCache(tmp_path, 10**9)
    with cache.snapshot("ws", "models", 1, "k1", filler(b"old")) as (volume, _):
        pass
    volume.save_synced("something else", Manifest())  # damaged
    with cache.snapshot("ws", "models", 1, "k1", filler(b"new")) as (volume, filled):
        assert filled == "filled" and (volume.tree / "model.bin").read_bytes() == b"new"


def test_eviction_counts_snapshots_and_never_removes_one_in_use(tmp_path):
    cache = WorkerCache(tmp_path, 0)
    with cache.snapshot("ws", "models", 1, "k1", filler(b"x" * 5000)) as (volume, _):
        assert cache.usage() >= 5000
        assert cache.evict() == []  # over the cap, but a job reads it
        assert (volume.tree / "model.bin").exists()
    assert cache.evict() == [volume.root]
    assert not volume.root.exists() and cache.snapshots() == [] and cache.usage() == 0


def test_eviction_is_least_recently_used_across_volumes_and_snapshots(tmp_path):
    cache = WorkerCache(tmp_path, 6000)
    with cache.snapshot("ws", "old", 1, "k1", filler(b"x" * 5000)) as (old, _):
        pass
    os.utime(tmp_path / ".snapshots" / "ws" / "old" / f"{old.root.name}.lock", (1, 1))  # long unused
    with cache.snapshot("ws", "recent", 1, "k1", filler(b"x" * 5000)) as (recent, _):
        pass
    assert cache.evict() == [old.root] and recent.root.exists()


def test_a_superseded_snapshot_goes_at_the_next_eviction_once_no_job_reads_it(tmp_path):
    cache = WorkerCache(tmp_path, 10**9)  # far under the cap
    with cache.snapshot("ws", "models", 1, "k1", filler(b"one")) as (one, _):
        with cache.snapshot("ws", "models", 2, "k2", filler(b"two", key="k2")) as (two, _):
            cache.evict()
            assert one.root.exists()  # still read by a job
        cache.evict()
        assert one.root.exists()
    cache.evict()
    assert not one.root.exists() and two.root.exists()


# A fresh interpreter per reader: forking the test process (threads, open sockets) could hang a child.
_FILL_IN_A_PROCESS = """
import os, sys
from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import Manifest

def fill(volume):
    volume.prepare()
    (volume.tree / "model.bin").write_bytes(b"m" * 1000)
    volume.save_synced("k1", Manifest())
    return os.getpid()

with WorkerCache(sys.argv[1], 10**9).snapshot("ws", "models", 1, "k1", fill) as (volume, filled):
    print(filled is not None, (volume.tree / "model.bin").read_bytes() == b"m" * 1000)
"""


def test_readers_in_several_processes_fill_it_once(tmp_path):
    root = Path(__file__).resolve().parents[2]
    readers = [subprocess.Popen([sys.executable, "-c", _FILL_IN_A_PROCESS, str(tmp_path)], cwd=root,
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    seen = []
    try:
        for reader in readers:
            out, _ = reader.communicate(timeout=60)
            assert reader.returncode == 0
            seen.append(out.split())
    finally:
        for reader in readers:
            reader.kill()
    assert sum(filled == "True" for filled, _ in seen) == 1
    assert all(whole == "True" for _, whole in seen)
