"""The hash cache never hides a change: a file rewritten with the same size in the same second (the
same timestamp) as the last sync recorded it is still pushed.

Filesystems that store whole seconds make that race easy to hit, so these tests run on one: ext4
with 128-byte inodes, loop-mounted (root and e2fsprogs, as on the CI machine).
"""
import os
import subprocess
import time

import pytest

from volumes.engine import sync
from volumes.engine.remote import DirectRemote

from .helpers import checkout, commit


@pytest.fixture
def coarse_fs(tmp_path):
    """A folder on a filesystem whose file times have whole seconds only."""
    image, mount = tmp_path / "coarse.img", tmp_path / "coarse"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-I", "128", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    try:
        probe = mount / "probe"
        probe.write_text("x")
        assert os.stat(probe).st_ctime_ns % 1_000_000_000 == 0, "the test filesystem keeps sub-second times"
        probe.unlink()
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def within_one_second(attempt):
    """Run attempt() until one run starts and ends in the same wall-clock second (at most 8 tries)."""
    for _ in range(8):
        time.sleep(1 - time.time() % 1 + 0.01)  # start just after a second begins
        second = int(time.time())
        result = attempt()
        if int(time.time()) == second:
            return result
    pytest.fail("could not run the steps within one second on this machine")


def same_stat(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns)


def assert_rewrite_committed(volume, seen: list, result: tuple, reader_cache) -> None:
    """The same-stat rewrite happened, was committed as the next generation, and a fresh reader gets it."""
    first, pushed, content = result
    assert seen[-1], "the rewrite changed the stat: the race was not reproduced"
    assert pushed.committed_generation == first.committed_generation + 1
    _, lease, fresh, _, _ = checkout(volume, reader_cache)
    assert (fresh.tree / "a.txt").read_text() == content


def test_a_file_rewritten_in_the_same_second_as_the_push_that_recorded_it_is_pushed(volume, coarse_fs):
    cache = coarse_fs / "cache"
    seen = []

    def attempt():
        generation = commit(volume, cache, lambda t: (t / "a.txt").write_text(f"one-{len(seen)}"))
        remote, lease, cached, base, _ = checkout(volume, cache)
        try:
            path = cached.tree / "a.txt"
            before = os.stat(path)
            path.write_text(f"two-{len(seen)}")  # same size, same second
            seen.append(same_stat(before, os.stat(path)))
            return generation, sync.push(remote, lease, cached, base), path.read_text()
        finally:
            remote.release(lease)

    assert_rewrite_committed(volume, seen, within_one_second(attempt), coarse_fs / "fresh")


def test_a_file_rewritten_in_the_same_second_as_the_pull_that_wrote_it_is_pushed(volume, coarse_fs, tmp_path):
    seen = []

    def attempt():
        n = len(seen)
        first = commit(volume, tmp_path / "writer", lambda t: (t / "a.txt").write_text(f"one-{n}"))
        remote, lease, cached, base, pulled = checkout(volume, coarse_fs / f"cache-{n}")
        try:
            assert pulled.files_pulled == 1
            path = cached.tree / "a.txt"
            before = os.stat(path)
            path.write_text(f"two-{n}")  # same size, same second as the write it was pulled from
            seen.append(same_stat(before, os.stat(path)))
            return first, sync.push(remote, lease, cached, base), f"two-{n}"
        finally:
            remote.release(lease)

    assert_rewrite_committed(volume, seen, within_one_second(attempt), tmp_path / "reader")


def test_a_file_rewritten_in_the_same_second_after_a_pull_that_trusted_the_cache_is_pushed(volume, coarse_fs):
    """A job's pull trusts the "known clean" record the push wrote instead of scanning: the job's same-second,
    same-size rewrite is still found by the push."""
    cache = coarse_fs / "cache"
    seen = []

    def attempt():
        remote, lease, cached, base, _ = checkout(volume, cache)
        try:
            (cached.tree / "a.txt").write_text(f"one-{len(seen)}")
            first = sync.push(remote, lease, cached, base)
        finally:
            remote.release(lease)
        remote = DirectRemote()
        lease = remote.acquire(volume.workspace_id, volume.name, "job")
        try:
            base, pulled = sync.pull(remote, lease, cached, for_job=True)
            assert pulled.known_clean and pulled.files_hashed == 0
            path = cached.tree / "a.txt"
            before = os.stat(path)
            path.write_text(f"two-{len(seen)}")  # same size, same second as the push that recorded it
            seen.append(same_stat(before, os.stat(path)))
            return first, sync.push(remote, lease, cached, base), path.read_text()
        finally:
            remote.release(lease)

    assert_rewrite_committed(volume, seen, within_one_second(attempt), coarse_fs / "fresh")


def test_a_file_rewritten_right_after_a_push_is_pushed_on_a_fine_grained_filesystem(volume, tmp_path):
    """Same-size rewrites right after each sync, on the ordinary cache filesystem."""
    for n in range(5):
        remote, lease, cached, base, _ = checkout(volume, tmp_path / "cache")
        try:
            (cached.tree / "a.txt").write_text(f"v{n}")
            pushed = sync.push(remote, lease, cached, base)
        finally:
            remote.release(lease)
        assert pushed.committed_generation == n + 1


def test_the_recorded_disk_usage_matches_a_walk_and_is_forgotten_while_a_job_may_change_the_tree(volume, tmp_path):
    commit(volume, tmp_path, lambda t: ((t / "d").mkdir(), (t / "d" / "f").write_bytes(b"x" * 5000),
                                        os.symlink("d/f", t / "link")))
    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    assert cached.usage_estimate() == cached.disk_usage() > 5000
    try:
        sync.pull(remote, lease, cached, for_job=True)  # as a job's pull: the job changes the tree
        (cached.tree / "big").write_bytes(b"y" * 100_000)
        assert not (cached.root / "usage").exists()  # not recorded: eviction walks the tree
        assert cached.usage_estimate() == cached.disk_usage() > 100_000
        sync.push(remote, lease, cached, base)
        assert cached.usage_estimate() == cached.disk_usage() > 100_000  # recorded again at the commit
    finally:
        remote.release(lease)


def test_the_usage_an_unchanged_push_records_is_its_own_generation_s_in_a_worker_that_syncs_several(
        volume, workspace, cast, tmp_path):
    """An unchanged push does not sum its manifest again when it was the last one summed; the figure must still
    follow every volume and generation a worker process goes between."""
    from volumes.services.volumes import volume_create

    other = volume_create(workspace, "other", owner=cast["owner"])
    sizes = {volume: [3000, 70_000, 10], other: [500_000, 20]}
    for step in range(3):
        for vol, steps in sizes.items():
            size = steps[min(step, len(steps) - 1)]
            commit(vol, tmp_path / vol.name, lambda t: (t / "f").write_bytes(b"x" * size))  # changed, or the same
            for _ in range(2):  # then unchanged, twice
                remote, lease, cached, base, _ = checkout(vol, tmp_path / vol.name)
                try:
                    sync.pull(remote, lease, cached, for_job=True)
                    assert sync.push(remote, lease, cached, base).committed_generation is None
                finally:
                    remote.release(lease)
                assert cached.usage_estimate() == cached.disk_usage() >= size


def test_a_hash_cache_in_the_old_json_format_is_still_used(volume, tmp_path):
    import json

    commit(volume, tmp_path, lambda t: (t / "a.txt").write_text("one"))
    remote, lease, cached, base, _ = checkout(volume, tmp_path)
    remote.release(lease)
    hashes = cached.load_hashes()
    (cached.root / "hashes.bin").unlink()
    (cached.root / "hashes.json").write_text(json.dumps(dict(hashes)))
    remote, lease, cached, base, stats = checkout(volume, tmp_path)
    remote.release(lease)
    assert stats.files_hashed == 0
