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

from .helpers import checkout, commit

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = {
    "report\\2024.csv": "contains a backslash",
    "tab\tname.txt": "control character",
    "bell\x07.txt": "control character",
    "del\x7f.txt": "control character",
}


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
    manifest = remote.read_manifest(checkout(volume, tmp_path / "other")[1])
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


def test_a_manifest_a_reader_would_refuse_is_never_committed(volume, cache_root):
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    bad = Manifest({"a\\b": Entry("a\\b", DIR, mode=0o755)})
    try:
        with pytest.raises(IntegrityError):
            remote.commit(lease, lease.generation, bad, ChangeCounts())
    finally:
        remote.release(lease)
    assert Volume.objects.get(pk=volume.pk).generation == 0


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
