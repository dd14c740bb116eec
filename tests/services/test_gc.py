"""GC: retention, the grace period for unreferenced objects, and stopping when the lease is lost.

A GC paused past its TTL on real processes and every backend: tests/reliability/test_sync.py."""
from __future__ import annotations

import os
import time

import pytest
from prometheus_client import REGISTRY

from tests.engine.helpers import commit
from volumes.engine import leases
from volumes.models import Volume
from volumes.services import gc
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import volume_prefix

pytestmark = pytest.mark.django_db(transaction=True)


def objects(volume) -> set[str]:
    store = store_for_storage(volume.storage)
    prefix = volume_prefix(volume.workspace_id, volume.name)
    return set(store.list(prefix))


def age_everything(storage_root, seconds: float) -> None:
    past = time.time() - seconds
    for dirpath, _, files in os.walk(storage_root):
        for name in files:
            os.utime(os.path.join(dirpath, name), (past, past))


@pytest.fixture
def history_of_one(settings):
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0}


def test_unreferenced_objects_younger_than_the_grace_period_are_kept_then_collected(
        volume, tmp_path, settings, storage_root, history_of_one):
    settings.VOLUMES = {**settings.VOLUMES, "GC_GRACE": 3600}
    commit(volume, tmp_path / "c", lambda t: (t / "a.txt").write_text("first"))
    commit(volume, tmp_path / "c", lambda t: (t / "a.txt").write_text("second"))
    before = objects(volume)
    removed = gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert removed == {"blobs": 0, "manifests": 0, "incomplete uploads": 0}
    assert objects(volume) == before  # an hour has not passed: a racing push may still count on them
    age_everything(storage_root, 3601)
    deleted_before = REGISTRY.get_sample_value("volumes_gc_objects_deleted_total", {"kind": "blobs"}) or 0
    removed = gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert removed == {"blobs": 1, "manifests": 2, "incomplete uploads": 0}  # the document and its one part
    assert REGISTRY.get_sample_value("volumes_gc_objects_deleted_total", {"kind": "blobs"}) == deleted_before + 1


def test_gc_stops_before_its_next_delete_batch_once_its_lease_is_lost(volume, tmp_path, monkeypatch, history_of_one):
    for i in range(5):
        commit(volume, tmp_path / "c", lambda t, i=i: (t / "a.txt").write_text(f"version {i}"))
    monkeypatch.setattr(gc, "DELETE_BATCH", 2)
    store_delete = type(store_for_storage(volume.storage)).delete
    deleted: list[str] = []

    def delete_then_lose_the_lease(self, key):
        store_delete(self, key)
        deleted.append(key)
        if len(deleted) == 2:  # another holder takes the volume while GC is between batches
            Volume.objects.filter(pk=volume.pk).update(lease_expires_at=None)
            leases.try_acquire(volume.pk, "a job")

    monkeypatch.setattr(type(store_for_storage(volume.storage)), "delete", delete_then_lose_the_lease)
    removed = gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert removed["stopped"] == 1 and len(deleted) == 2  # 8 objects were garbage; GC stopped after its batch
    assert Volume.objects.get(pk=volume.pk).lease_holder == "a job"  # and left the new holder's lease alone


def test_gc_is_refused_while_the_volume_is_leased(volume):
    lease = leases.acquire(volume.pk, "a job")
    assert gc.gc_volume(Volume.objects.get(pk=volume.pk)) is None
    leases.release(lease)
