"""The manifests a web process keeps for browsing are bounded by their entries, not by their count."""
from __future__ import annotations

import io

import pytest

from volumes.engine import manifest_store
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def reads(monkeypatch):
    """The manifest keys read from storage (the real read, counted)."""
    seen = []
    real = manifest_store.read

    def counted(store, key, *args, **kwargs):
        seen.append(key)
        return real(store, key, *args, **kwargs)

    monkeypatch.setattr(manifest_store, "read", counted)
    files._load_manifest.cache_clear()
    yield seen
    files._load_manifest.cache_clear()


def filled(workspace, owner, name, count):
    volume = volume_create(workspace, name, owner=owner)
    files.file_put_many(volume, [(f"f{i:03d}.txt", io.BytesIO(b"%d" % i)) for i in range(count)], owner)
    volume.refresh_from_db()
    return volume


def test_browsing_many_volumes_keeps_at_most_the_configured_entries_and_the_last_one_read(
        workspace, cast, settings, reads):
    settings.VOLUMES = {**settings.VOLUMES, "MANIFEST_MEMORY_ENTRIES": 100}
    volumes = [filled(workspace, cast["owner"], f"vol-{n}", 40) for n in range(4)]
    reads.clear()
    for volume in volumes:
        assert len(files.list_folder(volume)) == 40
    assert files._load_manifest.held_entries() <= 100
    # The two read last are still held; the first was let go and is read from storage again.
    for volume in volumes[2:]:
        files.list_folder(volume)
    assert len(reads) == 4
    files.list_folder(volumes[0])
    assert reads[-1] == volumes[0].manifest_key and len(reads) == 5

    # A manifest bigger than the whole bound is still kept while it is the one being browsed.
    big = filled(workspace, cast["owner"], "big", 150)
    reads.clear()
    for _ in range(3):
        assert len(files.list_folder(big)) == 150
    assert reads == [big.manifest_key]
    assert files._load_manifest.held_entries() == len(files.manifest_of(big).entries) >= 150
