"""Pins: a reader holds a committed generation without the lease, and GC keeps what it needs.

The same on real worker processes (a reader paused mid-pull, a reader's worker killed):
tests/jobs/test_readers_pin_a_generation.py."""
from __future__ import annotations

import time

import pytest
from django.db.models.functions import Now

from tests.engine.helpers import checkout, commit, tree_listing
from volumes.engine import leases, pins, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.exceptions import LeaseLost, NotFound
from volumes.models import Volume, VolumeCommit, VolumePin
from volumes.services import gc
from volumes.services.volumes import volume_prune_history
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

pytestmark = pytest.mark.django_db(transaction=True)


def blob_exists(volume, digest: str) -> bool:
    store = store_for_storage(volume.storage)
    return store.exists(blob_key(volume_prefix(volume.workspace_id, volume.name), digest))


def two_generations(volume, tmp_path):
    """Generation 1 with a.txt and b.txt, generation 2 with both changed; returns generation 1's manifest."""
    def first(tree):
        (tree / "a.txt").write_text("first a")
        (tree / "sub").mkdir()
        (tree / "sub" / "b.txt").write_text("first b")

    commit(volume, tmp_path / "w", first)
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "w")
    remote.release(lease)
    return base


def change_everything(volume, tmp_path):
    def second(tree):
        (tree / "a.txt").write_text("second a")
        (tree / "sub" / "b.txt").write_text("second b")

    commit(volume, tmp_path / "w", second)


def pull_pinned(pin, root):
    cached = WorkerCache(root, 10**12).private_volume()
    sync.pull(DirectRemote(), pin, cached)
    return tree_listing(cached.tree)


@pytest.fixture
def history_of_one(settings):
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0}


def test_a_pin_takes_the_committed_generation_at_once_while_a_writer_holds_the_lease(volume, tmp_path):
    two_generations(volume, tmp_path)
    writer = leases.acquire(volume.pk, "writer")
    pin = pins.pin(volume.pk, "reader")  # never waits: a lease wait would raise LeaseTimeout here
    assert (pin.generation, pin.token) == (1, 0)
    assert Volume.objects.get(pk=volume.pk).lease_token == writer.token  # the writer's lease is untouched
    assert pull_pinned(pin, tmp_path / "r")["a.txt"][1] == b"first a"
    assert pins.release(pin) and not VolumePin.objects.exists()


def test_a_reader_pinned_through_a_prune_and_a_gc_keeps_every_blob_and_its_pull_succeeds(
        volume, tmp_path, history_of_one):
    base = two_generations(volume, tmp_path)
    pin = pins.pin(volume.pk, "reader")
    change_everything(volume, tmp_path)
    assert volume_prune_history(Volume.objects.get(pk=volume.pk), keep=1) == 1
    removed = gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert removed["blobs"] == 0 and removed["manifests"] == 0, removed
    assert all(blob_exists(volume, e.hash) for e in base.files)
    listing = pull_pinned(pin, tmp_path / "r")
    assert (listing["a.txt"][1], listing["sub/b.txt"][1]) == (b"first a", b"first b")
    # Released, the generation is garbage like any pruned one.
    pins.release(pin)
    assert gc.gc_volume(Volume.objects.get(pk=volume.pk))["blobs"] == 2
    assert not any(blob_exists(volume, e.hash) for e in base.files)


def test_an_expired_pin_protects_nothing_and_cannot_be_renewed(volume, tmp_path, history_of_one):
    base = two_generations(volume, tmp_path)
    pin = pins.pin(volume.pk, "reader", ttl=0.2)
    change_everything(volume, tmp_path)
    while VolumePin.objects.filter(expires_at__gt=Now()).exists():  # expiry by the database clock
        time.sleep(0.05)
    assert gc.gc_volume(Volume.objects.get(pk=volume.pk))["blobs"] == 2
    assert not any(blob_exists(volume, e.hash) for e in base.files)
    assert not VolumePin.objects.exists()  # GC dropped the expired row
    with pytest.raises(LeaseLost, match="pin on generation 1 of volume 'training-data' expired"):
        pins.renew(pin)


def test_a_pin_whose_generation_lost_its_history_row_meanwhile_pins_the_current_one(volume, tmp_path, monkeypatch):
    """GC dropped the row between reading the volume and the pin's insert: the pin moves on."""
    two_generations(volume, tmp_path)
    real_create = VolumePin.objects.create

    def create_after_a_commit_and_gc(**fields):
        made = real_create(**fields)
        if fields["generation"] == 1:
            Volume.objects.filter(pk=volume.pk).update(generation=2)
            VolumeCommit.objects.filter(volume=volume, generation=1).delete()
        return made

    monkeypatch.setattr(VolumePin.objects, "create", create_after_a_commit_and_gc)
    Volume.objects.filter(pk=volume.pk).update(generation=1)
    pin = pins.pin(volume.pk, "reader")
    assert pin.generation == 2
    assert list(VolumePin.objects.values_list("generation", flat=True)) == [2]


def test_a_trashed_volume_is_purged_only_once_its_last_reader_is_done(volume, tmp_path, cast):
    from volumes.exceptions import Conflict
    from volumes.services.volumes import volume_delete, volume_purge

    base = two_generations(volume, tmp_path)
    pin = pins.pin(volume.pk, "reader")
    volume_delete(volume, user=cast["owner"])
    with pytest.raises(Conflict, match="1 job that started before it was deleted still reads it"):
        volume_purge(Volume.all_objects.get(pk=volume.pk))
    with pytest.raises(NotFound):
        pins.pin(volume.pk, "a new reader")  # a trashed volume takes no new readers
    assert pull_pinned(pin, tmp_path / "r")["a.txt"][1] == b"first a"
    pins.release(pin)
    assert volume_purge(Volume.all_objects.get(pk=volume.pk)) > 0
    assert not any(blob_exists(volume, e.hash) for e in base.files)


def test_a_pin_with_a_job_moves_the_volumes_last_used(volume, tmp_path, workspace, cast):
    from volumes.services.jobs import job_submit

    job = job_submit(workspace, cast["reader"], "python", "def main(): pass\n", enqueue=False)
    pins.pin(volume.pk, "reader", job_id=job.pk)
    volume.refresh_from_db()
    assert volume.last_used_job_id == job.pk and volume.last_used_at is not None
