"""The delete guard: shows what is lost, asks for the name, refuses while leased, moves to the trash."""
import pytest

from volumes.engine import leases
from volumes.models import Volume
from volumes.permissions import set_share
from volumes.services.jobs import job_submit

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def test_the_guard_shows_size_files_and_recent_jobs(upload, as_user, workspace, volume, cast):
    upload(volume, {"a.txt": b"hello"})
    job = job_submit(workspace, cast["owner"], "python", "# volume: training-data d\ndef main(): pass\n", {},
                     enqueue=False)
    job.mounts.create(volume=volume, volume_name=volume.name, mount_path="d", mode="rw")
    dialog = as_user("owner").get(url(workspace, volume, "delete/"), **HTMX).content.decode()
    assert "5\xa0bytes" in dialog and f"Job {job.pk}" in dialog and "Type <code>training-data</code>" in dialog


def test_a_wrong_name_does_not_delete(as_user, workspace, volume):
    response = as_user("owner").post(url(workspace, volume, "delete/"), {"confirm_name": "Training-Data"}, **HTMX)
    assert response.status_code == 422 and b"does not match" in response.content
    assert Volume.objects.filter(pk=volume.pk).exists()


def test_a_leased_volume_is_refused_naming_the_holder(as_user, workspace, volume):
    leases.try_acquire(volume.pk, "worker-x job 1")
    response = as_user("owner").post(url(workspace, volume, "delete/"), {"confirm_name": volume.name}, **HTMX)
    assert response.status_code == 409
    assert "Not deleted." in response.content.decode() and "in use by worker-x job 1" in response.content.decode()
    assert Volume.objects.filter(pk=volume.pk).exists()


def test_deleting_moves_the_volume_to_the_trash_keeping_its_files_in_storage(upload, as_user, workspace, volume,
                                                                            storage_root):
    upload(volume, {"a.txt": b"hello"})
    assert any(storage_root.rglob("*"))
    response = as_user("writer").post(url(workspace, volume, "delete/"), {"confirm_name": volume.name}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == url(workspace, rest="assets/volumes/")
    assert not Volume.objects.filter(pk=volume.pk).exists() and Volume.all_objects.filter(pk=volume.pk).exists()
    assert [p for p in storage_root.rglob("*") if p.is_file()]


def test_readers_cannot_delete(as_user, workspace, volume, cast):
    set_share(volume, cast["reader"], "read")
    assert b"delete/" not in as_user("reader").get(url(workspace, volume)).content
    response = as_user("reader").post(url(workspace, volume, "delete/"), {"confirm_name": volume.name})
    assert response.status_code == 403 and Volume.objects.filter(pk=volume.pk).exists()


def test_deleting_moves_the_volume_to_the_trash_page_where_it_can_be_restored_or_deleted_for_good(
        upload, as_user, workspace, volume, storage_root, cast):
    upload(volume, {"a.txt": b"hello"})
    as_user("writer").post(url(workspace, volume, "delete/"), {"confirm_name": volume.name}, **HTMX)
    page = as_user("owner").get(f"/w/{workspace.pk}/assets/trash/").content.decode()
    assert 'data-trashed="training-data"' in page and "Restore" in page
    assert 'data-trashed="training-data"' not in as_user("member").get(f"/w/{workspace.pk}/assets/trash/").content.decode()
    assert as_user("member").post(f"/w/{workspace.pk}/assets/trash/training-data/restore/").status_code == 403
    response = as_user("owner").post(f"/w/{workspace.pk}/assets/trash/training-data/restore/")
    assert response.status_code == 302 and Volume.objects.filter(pk=volume.pk).exists()
    assert b"a.txt" in as_user("owner").get(url(workspace, volume)).content
    as_user("owner").post(url(workspace, volume, "delete/"), {"confirm_name": volume.name}, **HTMX)
    response = as_user("admin").post(f"/w/{workspace.pk}/assets/trash/training-data/purge/", **HTMX)
    assert response.status_code == 200 and not Volume.all_objects.exists()
    assert not [p for p in storage_root.rglob("*") if p.is_file()]
