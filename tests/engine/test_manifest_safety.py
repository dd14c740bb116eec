"""What a job leaves in its volume can never brick it: names a volume cannot hold are skipped with a
warning, modes keep permission bits only, folder modes come back as they were, caches are private."""
from __future__ import annotations

import json
import os
import stat

import pytest

from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.commits import ChangeCounts
from volumes.engine.manifest import DIR, FILE, Entry, Manifest
from volumes.exceptions import IntegrityError
from volumes.models import Volume

from .helpers import checkout, commit, pull_refused

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = {
    "report\\2024.csv": "contains a backslash",
    "tab\tname.txt": "control character",
    "bell\x07.txt": "control character",
    "del\x7f.txt": "control character",
}


def committed(volume, cache_root):
    """The volume's committed manifest, read under a lease that is let go at once (the next checkout must not wait)."""
    remote, lease, _, _, _ = checkout(volume, cache_root)
    try:
        return remote.read_manifest(lease)
    finally:
        remote.release(lease)


def _deep(tree, depth):
    path = tree
    for _ in range(depth):
        path = path / "d"
    os.makedirs(path)
    (path / "leaf.txt").write_text("deep")


def test_names_a_volume_cannot_hold_are_skipped_with_a_warning_and_never_committed(volume, cache_root, tmp_path):
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    tree = cached.tree
    (tree / "good.txt").write_text("good")
    for name in HOSTILE:
        (tree / name).write_text("bad")
    os.mkdir(tree / "win\\dir")
    (tree / "win\\dir" / "inside.txt").write_text("inside a bad folder")
    with open(os.path.join(os.fsencode(tree), b"latin1-\xe9.txt"), "w") as fh:  # not UTF-8
        fh.write("bad")
    _deep(tree / "deep", 300)  # deeper than any volume holds, and than Python's recursion limit allows
    logs = []
    stats = sync.push(remote, lease, cached, base, log=logs.append)
    remote.release(lease)
    assert stats.committed_generation == 1
    manifest = committed(volume, tmp_path / "other")
    assert "good.txt" in manifest.entries
    assert not [p for p in manifest.entries if "\\" in p or "\t" in p or "\x07" in p or "\x7f" in p or "latin1" in p]
    assert not [p for p in manifest.entries if len(p) >= 256 and "/" not in p]
    assert max(p.count("/") for p in manifest.entries) < 256
    text = "\n".join(logs)
    for name, why in HOSTILE.items():
        assert repr(name)[:60].rstrip("'") in text, (name, text[:3000])
    assert "win\\\\dir" in text and "latin1-\\xe9.txt" in text and "nested more than 256" in text
    # Every other worker can pull it.
    other = WorkerCache(tmp_path / "third", 10**12).volume(volume.workspace_id, volume.name)
    lease = remote.acquire(volume.workspace_id, volume.name, "reader")
    try:
        sync.pull(remote, lease, other)
    finally:
        remote.release(lease)
    assert (other.tree / "good.txt").read_text() == "good"


def _long(tree, levels, name="\u00e9" * 127):
    """`levels` nested folders of 254-byte names, made from inside as a job can (each step a relative path):
    16 of them make a path a volume may hold (4,079 bytes) but the cache cannot (the OS's 4,095-byte limit
    on a whole path counts the cache folder too). Returns the deepest folder's path from the tree."""
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fh:
        fh.write("too deep for the cache")
    os.close(fd)
    return "/".join([name] * levels)


def test_a_path_longer_than_the_cache_can_hold_is_skipped_and_never_bricks_the_volume(volume, cache_root):
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    (cached.tree / "good.txt").write_text("good")
    deep = _long(cached.tree, 16)
    assert len(f"{cached.tree}/{deep}".encode()) > 4095 and len(f"{deep}/leaf.txt".encode()) <= 4096
    logs = []
    stats = sync.push(remote, lease, cached, base, log=logs.append)
    remote.release(lease)
    assert stats.committed_generation == 1
    assert "the cache cannot hold it" in "\n".join(logs)
    manifest = committed(volume, cache_root.parent / "reader")
    assert "good.txt" in manifest.entries and not [p for p in manifest.entries if p.endswith("leaf.txt")]
    assert all(len(os.fsencode(f"{cached.tree}/{p}")) <= 4095 for p in manifest.entries)
    # The next job's pull puts the tree back to the generation: the folders too long to reach are gone.
    remote, lease, again, base, _ = checkout(volume, cache_root, holder="next job")
    remote.release(lease)
    assert sorted(os.listdir(again.tree)) == sorted(p for p in manifest.entries if "/" not in p)
    assert (again.tree / "good.txt").read_text() == "good"


def test_a_manifest_a_reader_would_refuse_is_never_committed(volume, cache_root):
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    bad = Manifest({"a\\b": Entry("a\\b", DIR, mode=0o755)})
    try:
        with pytest.raises(IntegrityError):
            remote.commit(lease, lease.generation, bad, ChangeCounts())
    finally:
        remote.release(lease)
    assert Volume.objects.get(pk=volume.pk).generation == 0


def test_a_generation_with_a_path_the_cache_cannot_hold_is_refused_with_what_to_do(volume, cache_root):
    import io

    from volumes.services.files import file_delete, file_move, file_put

    deep = "/".join(["\u00e9" * 127] * 16) + "/leaf.txt"  # 4,088 bytes: a volume holds it, no cache folder does
    file_put(volume, "kept.txt", io.BytesIO(b"kept"))
    file_put(volume, deep, io.BytesIO(b"uploaded"))
    refused, cached = pull_refused(volume, cache_root, IntegrityError, holder="worker")
    assert "VOLUMES_CACHE_DIR" in str(refused) and "a path of 4,0" in str(refused)
    assert not os.listdir(cached.tree)  # refused before anything was written
    file_move(volume, deep, "leaf.txt")
    file_delete(volume, deep.partition("/")[0])  # the folders, too deep for the cache as well
    remote, lease, cached, _, _ = checkout(volume, cache_root)
    remote.release(lease)
    assert (cached.tree / "leaf.txt").read_text() == "uploaded" and (cached.tree / "kept.txt").exists()


def test_setuid_setgid_and_sticky_bits_are_never_committed_nor_restored(volume, cache_root, tmp_path, storage_root):
    def mutate(tree):
        (tree / "tool").write_text("#!/bin/sh\n")
        os.chmod(tree / "tool", 0o6755)
        os.mkdir(tree / "shared")
        os.chmod(tree / "shared", 0o1777)

    commit(volume, cache_root, mutate)
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "fresh")
    remote.release(lease)
    assert base.entries["tool"].mode == 0o755 and base.entries["shared"].mode == 0o777
    assert stat.S_IMODE(os.lstat(cached.tree / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(cached.tree / "shared").st_mode) == 0o777

    # A manifest an old version (or a forged agent) left with the bits set: they are masked on the way in.
    volume.refresh_from_db()
    store_path = storage_root / volume.manifest_key
    from volumes.engine import manifest_store
    from volumes.storage.factory import store_for_storage

    doc = json.loads(manifest_store.read_bytes(store_for_storage(volume.storage), volume.manifest_key))
    for row in doc["entries"]:
        row["mode"] = 0o4755 if row["type"] == FILE else 0o3777
    store_path.write_bytes(json.dumps(doc).encode())
    from volumes.services.files import _load_manifest

    _load_manifest.cache_clear()
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "forged")
    remote.release(lease)
    assert stat.S_IMODE(os.lstat(cached.tree / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(cached.tree / "shared").st_mode) == 0o777


def test_folder_modes_without_owner_rwx_come_back_unchanged_and_commit_nothing_new(volume, cache_root, tmp_path):
    def mutate(tree):
        os.makedirs(tree / "locked" / "inner")
        (tree / "locked" / "inner" / "f.txt").write_text("f")
        os.chmod(tree / "locked" / "inner", 0o500)
        os.chmod(tree / "locked", 0o050)

    assert commit(volume, cache_root, mutate).committed_generation == 1
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "fresh")
    try:
        assert stat.S_IMODE(os.lstat(cached.tree / "locked").st_mode) == 0o050
        assert stat.S_IMODE(os.lstat(cached.tree / "locked" / "inner").st_mode) == 0o500
        assert sync.push(remote, lease, cached, base).committed_generation is None  # nothing changed
        base, _ = sync.pull(remote, lease, cached)  # a second pull into the same cache works too
        assert stat.S_IMODE(os.lstat(cached.tree / "locked").st_mode) == 0o050
    finally:
        remote.release(lease)
    assert Volume.objects.get(pk=volume.pk).generation == 1


def test_cache_folders_are_private_to_the_worker(volume, tmp_path):
    root = tmp_path / "cache"
    checkout(volume, root)
    cached = WorkerCache(root, 10**12).volume(volume.workspace_id, volume.name)
    for folder in (root, root / volume.workspace_id, cached.root, cached.staging):
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700, folder
