"""Trash: deleting a volume moves it to the workspace's trash; restore brings back every file and its
history; delete for good removes its objects at once; GC purges it after VOLUMES_TRASH_DAYS; jobs
never mount a trashed volume."""
from datetime import timedelta

import pytest
from django.utils import timezone

from volumes.models import Volume, VolumeCommit
from volumes.services import gc
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from .helpers import seed

pytestmark = pytest.mark.django_db

URL = "/api/w/acme/volumes/"
TRASH = "/api/w/acme/trash/"


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def stored(storage_root) -> set[str]:
    return {str(p.relative_to(storage_root)) for p in storage_root.rglob("*") if p.is_file()}


def test_a_deleted_volume_leaves_the_lists_and_restore_brings_back_every_file_and_its_history(
        owner_api, volume, storage_root, cast):
    seed(volume, {"a.txt": b"first"}, user=cast["owner"])
    seed(volume, {"a.txt": b"second", "dir/b.bin": b"12345678"}, user=cast["owner"])
    history = owner_api.get(URL + "training-data/history/").json()
    objects = stored(storage_root)

    assert owner_api.delete(URL + "training-data/").status_code == 204
    assert owner_api.get(URL).json() == []
    assert owner_api.get(URL + "training-data/").status_code == 404
    assert stored(storage_root) == objects  # nothing removed from storage yet
    [row] = owner_api.get(TRASH).json()
    assert row["name"] == "training-data" and row["deleted_by"] == "owner" and row["purge_at"]
    # The name stays reserved while the volume is in the trash.
    refused = owner_api.post(URL, {"name": "training-data"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"] == "volume_in_trash"

    assert owner_api.post(TRASH + "training-data/restore/").status_code == 200
    assert owner_api.get(TRASH).json() == []
    assert body(owner_api.get(URL + "training-data/files/a.txt")) == b"second"
    assert body(owner_api.get(URL + "training-data/files/dir/b.bin")) == b"12345678"
    assert owner_api.get(URL + "training-data/history/").json() == history
    first = history["results"][-1]["generation"] if "results" in history else history[-1]["generation"]
    assert owner_api.post(URL + f"training-data/history/{first}/restore/").status_code == 200
    assert body(owner_api.get(URL + "training-data/files/a.txt")) == b"first"


def test_delete_for_good_removes_every_object_at_once_and_frees_the_name(owner_api, volume, storage_root, cast):
    seed(volume, {"a.txt": b"secret"}, user=cast["owner"])
    owner_api.delete(URL + "training-data/")
    assert owner_api.delete(TRASH + "training-data/").status_code == 204
    assert stored(storage_root) == set()
    assert not Volume.all_objects.exists() and not VolumeCommit.objects.exists()
    assert owner_api.post(URL, {"name": "training-data"}, format="json").status_code == 201


def test_only_the_owner_who_deleted_it_and_admins_see_and_restore_the_trash(client_for, volume, cast):
    client_for("owner").delete(URL + "training-data/")
    assert client_for("member").get(TRASH).json() == []
    assert client_for("member").post(TRASH + "training-data/restore/").status_code == 403
    assert client_for("outsider").get(TRASH).status_code == 404
    assert [r["name"] for r in client_for("admin").get(TRASH).json()] == ["training-data"]
    assert client_for("admin").post(TRASH + "training-data/restore/").status_code == 200


def test_gc_purges_trashed_volumes_past_the_retention_only(owner_api, volume, storage_root, cast, settings):
    settings.VOLUMES = {**settings.VOLUMES, "TRASH_DAYS": 7}
    seed(volume, {"a.txt": b"a"}, user=cast["owner"])
    owner_api.delete(URL + "training-data/")
    gc.gc_all()
    assert stored(storage_root) and Volume.all_objects.filter(pk=volume.pk).exists()
    Volume.all_objects.filter(pk=volume.pk).update(trashed_at=timezone.now() - timedelta(days=7, seconds=1))
    assert owner_api.post(TRASH + "training-data/restore/").status_code == 404  # past retention
    gc.gc_all()
    assert stored(storage_root) == set() and not Volume.all_objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_naming_a_trashed_volume_fails_and_says_it_is_in_the_trash(owner_api, volume, cast, cache_root,
                                                                          settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    seed(volume, {"a.txt": b"a"}, user=cast["owner"])
    owner_api.delete(URL + "training-data/")
    job = job_submit(volume.workspace, cast["owner"], "python",
                     "# volume: training-data data\ndef main():\n    return 1\n", {}, enqueue=False)
    job = job_run(job.pk)
    assert job.status == "failure"
    assert "in the workspace's trash" in job.error and "line 1" in job.error
    assert Volume.all_objects.count() == 1  # no new empty volume took its name
