"""Storage blips are ridden out: transient errors are retried for VOLUMES_STORAGE_RETRY_FOR seconds,
permanent ones fail at once (with the storage fault injection of volumes/storage/faults.py)."""
from __future__ import annotations

import pytest

from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.exceptions import StorageUnavailable
from volumes.models import Volume
from volumes.storage import clear_store_cache, store_for_storage

pytestmark = pytest.mark.django_db

FILES = {f"f{i}.txt": f"content {i}\n".encode() for i in range(5)}


@pytest.fixture
def faults(monkeypatch, settings):
    settings.VOLUMES = {**settings.VOLUMES, "TRANSFER_THREADS": 1}

    def inject(spec: str) -> None:
        monkeypatch.setenv("VOLUMES_STORAGE_FAULT", spec)
        clear_store_cache()

    yield inject
    monkeypatch.delenv("VOLUMES_STORAGE_FAULT", raising=False)
    clear_store_cache()


def push_files(volume, cache_root, files=FILES, lines=None):
    remote = DirectRemote()
    if lines is not None:
        remote.notify = lines.append
    lease = remote.acquire(volume.workspace_id, volume.name, "test", wait=5)
    try:
        cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        base, _ = sync.pull(remote, lease, cached)
        for name, data in files.items():
            (cached.tree / name).write_bytes(data)
        return sync.push(remote, lease, cached, base)
    finally:
        remote.release(lease)


def pull_fresh(volume, cache_root, lines=None):
    remote = DirectRemote()
    if lines is not None:
        remote.notify = lines.append
    lease = remote.acquire(volume.workspace_id, volume.name, "reader", wait=5)
    try:
        cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        sync.pull(remote, lease, cached)
        return {p.name: p.read_bytes() for p in cached.tree.iterdir()}
    finally:
        remote.release(lease)


def test_a_blip_during_a_push_is_retried_and_the_push_commits(volume, tmp_path, faults):
    faults("put_file:2:transient:4")  # the 2nd to 5th upload attempts are refused
    lines: list[str] = []
    stats = push_files(volume, tmp_path / "cache", lines=lines)
    assert stats.committed_generation == 1
    assert len(lines) == 1 and "connection refused" in lines[0] and "retrying for up to 60 s" in lines[0]
    faults("")
    assert pull_fresh(volume, tmp_path / "fresh") == FILES


def test_a_blip_during_a_pull_is_retried(volume, tmp_path, faults):
    push_files(volume, tmp_path / "cache")
    faults("get_file:1:transient:3,get_bytes:1:transient:2")
    assert pull_fresh(volume, tmp_path / "fresh") == FILES


def test_a_permanent_error_fails_the_push_at_once(volume, tmp_path, faults, settings):
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 3600.0}  # a retry would hang the test
    faults("put_file:2:error")
    with pytest.raises(StorageUnavailable) as info:
        push_files(volume, tmp_path / "cache")
    assert "injected fault" in str(info.value) and "retrying" not in str(info.value)
    assert store_for_storage(volume.storage)._calls["put_file"] == 2  # the failed call was not repeated
    assert Volume.objects.get(pk=volume.pk).generation == 0


def test_an_outage_longer_than_the_setting_fails_the_push_saying_how_long_it_tried(volume, tmp_path, faults,
                                                                                    settings):
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 1.0}
    faults("put_file:1:transient:1000000")
    with pytest.raises(StorageUnavailable) as info:
        push_files(volume, tmp_path / "cache")
    assert "still failing after retrying for 1 s" in str(info.value)
    assert store_for_storage(volume.storage)._calls["put_file"] > 2  # it did retry
    assert Volume.objects.get(pk=volume.pk).generation == 0


def test_credentials_refused_are_not_retried(request, tmp_path, workspace, cast, settings, moto_server_with_auth):
    from volumes.models import ObjectStorage
    from volumes.services.volumes import volume_create

    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 3600.0}
    storage = ObjectStorage.objects.create(
        workspace=workspace, name="wrong keys", kind="s3",
        config={"bucket": "any-bucket", "endpoint_url": moto_server_with_auth, "region": "us-east-1",
                "access_key": "nobody", "secret_key": "wrong"})
    workspace.volume_storage = storage
    workspace.save()
    volume = volume_create(workspace, "locked-out", owner=cast["owner"])
    with pytest.raises(StorageUnavailable) as info:
        push_files(volume, tmp_path / "cache")
    assert info.value.reason == "denied" and "access was refused" in str(info.value)


def test_the_fault_spec_takes_a_count_of_transient_failures():
    from volumes.storage import faults

    assert faults.parse("put_file:2:transient:5,get_file:1:transient") == {
        "put_file": (2, "transient", 5), "get_file": (1, "transient")}
    for bad in ("put_file:1:error:3", "put_file:1:transient:0", "put_file:1:transient:x"):
        with pytest.raises(ValueError, match="OPERATION:N:transient"):
            faults.parse(bad)


def test_a_server_that_stays_unavailable_is_named_as_the_server_not_as_a_storage():
    from volumes.engine.retry import retrying
    from volumes.exceptions import ServerUnavailable

    def down() -> None:
        raise ServerUnavailable("the server answered 502 to GET http://server/api/", "server_error")

    lines: list[str] = []
    with pytest.raises(ServerUnavailable) as info:
        retrying(down, "a download of blob abc", budget=0.3, notify=lines.append)
    assert str(info.value) == "the server answered 502 to GET http://server/api/; still failing after retrying for 0.3 s"
    assert info.value.reason == "server_error"
    assert lines == ["the server is unavailable (the server answered 502 to GET http://server/api/) during a download "
                     "of blob abc; retrying for up to 0.3 s"]
