"""History is bounded (last N generations AND younger than D days) and counts against the volume's
cap and the workspace's quota, on every commit path (a job's push, the file API)."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.engine.helpers import commit
from volumes.exceptions import LimitExceeded
from volumes.models import Volume, VolumeCommit
from volumes.services import files, gc
from volumes.services.volumes import volume_create, volume_prune_history
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import volume_prefix

pytestmark = pytest.mark.django_db(transaction=True)
KiB, MiB = 1024, 1024 * 1024


def overwrite(i: int):
    return lambda tree: (tree / "big.bin").write_bytes(bytes([i % 256]) * 900 * KiB)


@pytest.fixture
def capped(workspace):
    workspace.max_volume_size = MiB
    workspace.save(update_fields=["max_volume_size"])
    return workspace


def test_twenty_overwrites_of_a_900_kib_file_into_a_1_mib_volume_are_refused_once_history_is_over_the_cap(
        volume, capped, tmp_path):
    commit(volume, tmp_path / "c", overwrite(0))
    refused = 0
    for i in range(1, 20):
        try:
            commit(volume, tmp_path / "c", overwrite(i))
        except LimitExceeded as exc:
            refused += 1
            message = str(exc)
    assert refused == 19
    assert "1,843,200 bytes" in message and "1,048,576" in message and "Nothing was committed" in message
    assert "volume prune training-data" in message and "raise the limit" in message
    volume.refresh_from_db()
    assert volume.generation == 1 and VolumeCommit.objects.filter(volume=volume).count() == 1
    blobs = [k for k in store_for_storage(volume.storage).list(volume_prefix("acme", volume.name)) if "/blobs/" in k]
    assert len(blobs) == 1  # refused before anything was uploaded
    # The file API commits through the same check.
    with pytest.raises(LimitExceeded, match="over its limit"):
        files.file_put(volume, "other.bin", io.BytesIO(b"x" * 200 * KiB))


def test_a_change_fits_once_history_is_pruned_and_deletes_always_commit(volume, capped, tmp_path, settings):
    capped.max_volume_size = 2 * MiB
    capped.save(update_fields=["max_volume_size"])
    commit(volume, tmp_path / "c", overwrite(0))
    commit(volume, tmp_path / "c", overwrite(1))  # 1.8 MiB with its history: fits 2 MiB
    with pytest.raises(LimitExceeded):
        commit(volume, tmp_path / "c", overwrite(2))  # 2.6 MiB
    assert volume_prune_history(Volume.objects.get(pk=volume.pk), keep=1) == 1
    commit(volume, tmp_path / "c", overwrite(2))  # the current one and this one: 1.8 MiB
    capped.max_volume_size = KiB
    capped.save(update_fields=["max_volume_size"])
    stats = commit(volume, tmp_path / "c", lambda tree: (tree / "big.bin").unlink())  # over the cap, but a delete
    assert stats.committed_generation == 4


def test_history_counts_against_the_workspace_quota(workspace, cast, tmp_path):
    workspace.storage_quota = 2 * MiB
    workspace.save(update_fields=["storage_quota"])
    first, second = volume_create(workspace, "first"), volume_create(workspace, "second")
    commit(first, tmp_path / "a", overwrite(0))
    commit(first, tmp_path / "a", overwrite(1))  # 1.8 MiB kept by "first"
    with pytest.raises(LimitExceeded, match="quota of 2,097,152 bytes") as info:
        commit(second, tmp_path / "b", overwrite(2))
    assert "workspace 'acme'" in str(info.value)
    volume_prune_history(Volume.objects.get(pk=first.pk))
    commit(second, tmp_path / "b", overwrite(2))


def test_retention_keeps_the_last_n_generations_and_only_those_younger_than_d_days(volume, tmp_path, settings):
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 3, "HISTORY_KEEP_DAYS": 30}
    for i in range(6):
        commit(volume, tmp_path / "c", lambda tree, i=i: (tree / "f.txt").write_text(str(i)))
    gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert sorted(VolumeCommit.objects.filter(volume=volume).values_list("generation", flat=True)) == [4, 5, 6]
    # Young enough by count, but older than 30 days: pruned too (the current generation always stays).
    VolumeCommit.objects.filter(volume=volume).update(created_at=timezone.now() - timedelta(days=31))
    gc.gc_volume(Volume.objects.get(pk=volume.pk))
    assert list(VolumeCommit.objects.filter(volume=volume).values_list("generation", flat=True)) == [6]
