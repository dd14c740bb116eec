"""The dashboard's Duplicate and Size limit dialogs, the usage bar, and Delete for good in its own dialog."""
import pytest

from volumes.models import Volume, VolumeCommit
from volumes.permissions import set_share
from volumes.services.volumes import volume_delete, volume_set_quota

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def test_a_reader_duplicates_a_chosen_generation_and_lands_on_the_copy(upload, as_user, workspace, volume, cast):
    upload(volume, {"a.txt": b"first"})
    upload(volume, {"b.txt": b"second"})
    set_share(volume, cast["reader"], "read")
    page = as_user("reader").get(url(workspace, volume)).content.decode()
    assert url(workspace, volume, "duplicate/") in page
    dialog = as_user("reader").get(url(workspace, volume, "duplicate/"), **HTMX).content.decode()
    assert 'name="name"' in dialog and "csrfmiddlewaretoken" in dialog
    assert '<option value="2" selected>' in dialog and '<option value="1">' in dialog
    assert 'value="training-data-copy"' in dialog  # a free name to start from
    response = as_user("reader").post(url(workspace, volume, "duplicate/"), {"name": "mine", "generation": "1"},
                                      **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == f"/w/acme/volumes/mine/"
    copy = Volume.objects.get(name="mine")
    assert (copy.owner, copy.file_count) == (cast["reader"], 1)
    history = as_user("reader").get(url(workspace, copy, "history/")).content.decode()
    assert "duplicated from training-data generation 1 by reader" in history


def test_a_taken_name_or_a_generation_from_the_history_link(as_user, upload, workspace, volume):
    upload(volume, {"a.txt": b"first"})
    response = as_user("owner").post(url(workspace, volume, "duplicate/"), {"name": "TRAINING-DATA"}, **HTMX)
    assert response.status_code == 422 and "already exists" in response.content.decode()
    assert "csrfmiddlewaretoken" in response.content.decode()
    dialog = as_user("owner").get(url(workspace, volume, "duplicate/") + "?generation=1", **HTMX).content.decode()
    assert '<option value="1" selected>' in dialog
    history = as_user("owner").get(url(workspace, volume, "history/")).content.decode()
    assert url(workspace, volume, "duplicate/") + "?generation=1" in history


def test_owners_set_a_limit_in_human_units_and_see_the_bar(as_user, upload, workspace, volume, cast):
    upload(volume, {"a.txt": b"x" * 850})
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert url(workspace, volume, "quota/") in page and 'role="meter"' not in page  # no limit: no bar
    dialog = as_user("owner").get(url(workspace, volume, "quota/"), **HTMX).content.decode()
    assert 'name="size"' in dialog and "csrfmiddlewaretoken" in dialog
    response = as_user("owner").post(url(workspace, volume, "quota/"), {"size": "1 kB"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == url(workspace, volume)
    assert Volume.objects.get(pk=volume.pk).max_size_bytes == 1000
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert 'role="meter"' in page and 'aria-valuenow="85"' in page and "usage-warning" in page
    assert "85%" in page and "Near its limit" in page
    table = as_user("owner").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "85%" in table and "usage-warning" in table


def test_a_limit_below_the_current_size_is_saved_with_a_warning_and_bad_input_says_why(
        as_user, upload, workspace, volume):
    upload(volume, {"a.txt": b"x" * 2000})
    for bad, why in (("-1", "0 or more"), ("ten gigs", "like 10 GB")):
        response = as_user("owner").post(url(workspace, volume, "quota/"), {"size": bad}, **HTMX)
        assert response.status_code == 422 and why in response.content.decode()
        assert 'aria-invalid="true"' in response.content.decode()
    response = as_user("owner").post(url(workspace, volume, "quota/"), {"size": "1000"}, **HTMX)
    assert response.status_code == 200
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert "usage-error" in page and "Over its limit" in page
    assert "stores more than its new limit" in page  # the flash message
    as_user("owner").post(url(workspace, volume, "quota/"), {"size": "none"}, **HTMX)
    assert Volume.objects.get(pk=volume.pk).max_size_bytes is None


def test_writers_may_not_change_the_limit(as_user, workspace, volume, cast):
    set_share(volume, cast["writer"], "write")
    assert url(workspace, volume, "quota/") not in as_user("writer").get(url(workspace, volume)).content.decode()
    response = as_user("writer").post(url(workspace, volume, "quota/"), {"size": "1 GB"})
    assert response.status_code == 403
    assert Volume.objects.get(pk=volume.pk).max_size_bytes is None


def test_an_admin_sees_the_workspace_cap_when_it_is_the_smaller(as_user, upload, workspace, volume):
    upload(volume, {"a.txt": b"x" * 500})
    workspace.max_volume_size = 1000
    workspace.save(update_fields=["max_volume_size"])
    volume_set_quota(volume, 5000)
    dialog = as_user("admin").get(url(workspace, volume, "quota/"), **HTMX).content.decode()
    assert "The workspace limits every volume to" in dialog
    page = as_user("admin").get(url(workspace, volume)).content.decode()
    assert 'aria-valuenow="50"' in page


def test_delete_for_good_asks_in_a_dialog_with_csrf(as_user, workspace, volume, cast):
    volume_delete(volume, user=cast["owner"])
    trash = as_user("owner").get(url(workspace, rest="assets/trash/")).content.decode()
    assert "hx-confirm" not in trash
    purge = url(workspace, rest="assets/trash/training-data/purge/")
    dialog = as_user("owner").get(purge, **HTMX).content.decode()
    assert "cannot be undone" in dialog and "csrfmiddlewaretoken" in dialog and f'hx-post="{purge}"' in dialog
    response = as_user("owner").post(purge, **HTMX)
    assert response.status_code == 200 and not Volume.all_objects.filter(pk=volume.pk).exists()
    assert not VolumeCommit.objects.filter(volume_id=volume.pk).exists()
