"""Duplicate a volume: a new volume with the files of any kept generation of another, copied inside the
storage (never through the server), committed as its generation 1 with a note of where it came from."""
from __future__ import annotations

import os

import pytest

from tests.engine.helpers import checkout, commit, tree_listing
from tests.servers import use_storage
from volumes.engine import leases
from volumes.exceptions import Conflict, LimitExceeded, NotFound, VolumeInTrash
from volumes.models import ObjectStorage, Volume, VolumeCommit
from volumes.services import files
from volumes.services.volumes import volume_create, volume_delete, volume_duplicate
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

pytestmark = pytest.mark.django_db(transaction=True)


def first(tree):
    (tree / "data").mkdir()
    (tree / "data" / "a.csv").write_bytes(b"x,y\n1,2\n")
    (tree / "data" / "empty").write_bytes(b"")
    (tree / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(tree / "run.sh", 0o755)
    os.chmod(tree / "data" / "a.csv", 0o600)
    os.utime(tree / "data" / "a.csv", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.symlink("data/a.csv", tree / "latest")
    os.symlink("/etc/passwd", tree / "outside")  # kept as a link, never followed
    (tree / "big.bin").write_bytes(os.urandom(300_000))


def second(tree):
    (tree / "data" / "a.csv").write_bytes(b"x,y\n3,4\n")
    (tree / "big.bin").unlink()
    (tree / "new.txt").write_bytes(b"only in generation 2")


def described(manifest) -> dict:
    """Every entry as stored, without the generation that last changed it (a copy starts its own history)."""
    return {p: (e.type, e.size, e.hash, e.mode, e.mtime_ns, e.target) for p, e in manifest.entries.items()}


@pytest.fixture(params=["filesystem", "s3"])
def source(request, tmp_path, workspace, cast):
    use_storage(workspace, request.param, request, tmp_path)
    volume = volume_create(workspace, "training-data", owner=cast["owner"])
    commit(volume, tmp_path / "c1", first)
    commit(volume, tmp_path / "c2", second)
    return Volume.objects.get(pk=volume.pk)


def test_a_duplicate_of_an_old_generation_is_equal_file_for_file_and_says_where_it_came_from(
        source, cast, tmp_path):
    copy = volume_duplicate(source, "training-copy", cast["reader"], generation=1)
    assert (copy.generation, copy.owner, copy.file_count) == (1, cast["reader"], files.manifest_of(source, 1).file_count)
    assert described(files.manifest_of(copy)) == described(files.manifest_of(source, 1))
    assert copy.size_bytes == files.manifest_of(source, 1).size_bytes
    note = VolumeCommit.objects.get(volume=copy)
    assert note.message == "duplicated from training-data generation 1 by reader"
    assert (note.generation, note.parent, note.user) == (1, 0, cast["reader"])
    # A pull of the copy gives the tree of the source's generation 1, byte for byte, links as links.
    remote, lease, cached_copy, _, _ = checkout(copy, tmp_path / "copy")
    remote.release(lease)
    assert tree_listing(cached_copy.tree)["outside"] == ("link", "/etc/passwd")
    assert tree_listing(cached_copy.tree)["run.sh"][2] == 0o755
    assert cached_copy.tree.joinpath("data/a.csv").stat().st_mtime_ns == 1_600_000_000_123_456_789
    # Its blobs live under its own prefix: purging the source later leaves the copy whole.
    store = store_for_storage(copy.storage)
    for entry in files.manifest_of(copy).files:
        assert store.exists(blob_key(volume_prefix("acme", "training-copy"), entry.hash))


def test_a_duplicate_of_the_current_generation_by_default(source, cast):
    copy = volume_duplicate(source, "copy-now", cast["owner"])
    assert described(files.manifest_of(copy)) == described(files.manifest_of(source))
    assert VolumeCommit.objects.get(volume=copy).message == "duplicated from training-data generation 2 by owner"


def test_the_blobs_are_copied_inside_the_storage_never_downloaded_through_the_server(source, cast, monkeypatch):
    store = store_for_storage(source.storage)

    def refuse(*args, **kwargs):
        raise AssertionError("a blob was read through the server")

    for name in ("get_file", "get_file_sha256", "open_read"):
        monkeypatch.setattr(type(store), name, refuse)
    copy = volume_duplicate(source, "no-download", cast["owner"], generation=1)
    assert copy.file_count == files.manifest_of(source, 1).file_count


def test_the_copy_pins_the_source_generation_while_it_runs_and_lets_go_after(source, cast, monkeypatch):
    from volumes.engine import pins

    store = type(store_for_storage(source.storage))
    seen = []
    real = store.copy

    def copy(self, src_key, dst_key):
        seen.append([(p.generation, p.holder) for p in pins.live(source.pk)])
        return real(self, src_key, dst_key)

    monkeypatch.setattr(store, "copy", copy)
    volume_duplicate(source, "pinned", cast["owner"])
    assert seen and all(live == [(2, "duplicating to pinned (owner)")] for live in seen)
    assert not pins.live(source.pk).exists()


def test_the_source_is_read_without_its_lease_so_a_job_holding_it_is_not_blocked(source, cast):
    held = leases.try_acquire(source.pk, "a long job")
    try:
        copy = volume_duplicate(source, "while-leased", cast["owner"])
        assert leases.current_holder(source.pk).holder == "a long job"
    finally:
        leases.release(held)
    assert copy.generation == 1


def test_the_copy_obeys_the_rules_of_creating_a_volume(source, cast, workspace, settings):
    with pytest.raises(Conflict, match="already exists"):
        volume_duplicate(source, "TRAINING-DATA", cast["owner"])
    with pytest.raises(Exception, match="invalid volume name"):
        volume_duplicate(source, "-bad-", cast["owner"])
    gone = volume_create(workspace, "gone", owner=cast["owner"])
    volume_delete(gone, user=cast["owner"])
    with pytest.raises(VolumeInTrash):
        volume_duplicate(source, "gone", cast["owner"])
    with pytest.raises(NotFound, match="no generation 9"):
        volume_duplicate(source, "from-the-future", cast["owner"], generation=9)
    settings.VOLUMES = {**settings.VOLUMES, "MAX_VOLUMES_PER_WORKSPACE": 2}
    with pytest.raises(LimitExceeded, match="limit"):
        volume_duplicate(source, "one-too-many", cast["owner"])
    assert not Volume.all_objects.filter(name__in=["from-the-future", "one-too-many"]).exists()


def test_a_copy_that_fails_midway_leaves_no_volume_behind(source, cast, monkeypatch):
    store = store_for_storage(source.storage)
    needed = files.manifest_of(source, 1).entries["run.sh"].hash
    store.delete(blob_key(volume_prefix("acme", "training-data"), needed))  # damaged storage
    with pytest.raises(NotFound, match="cannot be duplicated"):
        volume_duplicate(source, "half", cast["owner"], generation=1)
    assert not Volume.all_objects.filter(name="half").exists()
    assert not list(store.list(volume_prefix("acme", "half")))


def test_a_copy_into_another_storage_than_the_sources_streams_each_blob_checked(source, cast, workspace, tmp_path):
    """The workspace moved its volume storage after the source was made: the copy lands in the new one."""
    other = ObjectStorage.objects.create(workspace=workspace, name="new home", kind="filesystem",
                                         config={"root": str(tmp_path / "new-home")})
    workspace.volume_storage = other
    workspace.save(update_fields=["volume_storage"])
    copy = volume_duplicate(source, "moved", cast["owner"], generation=1)
    assert copy.storage_id == other.pk != source.storage_id
    assert described(files.manifest_of(copy)) == described(files.manifest_of(source, 1))
    store = store_for_storage(other)
    for entry in files.manifest_of(copy).files:
        assert store.exists(blob_key(volume_prefix("acme", "moved"), entry.hash))
