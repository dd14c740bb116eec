"""History: generations with who/when/what, a diff of one generation, restore."""
import pytest

from volumes.engine import leases
from volumes.services import files

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_generations(upload, volume):
    upload(volume, {"a.txt": b"one", "b.txt": b"bee"})
    upload(volume, {"a.txt": b"two!", "c.txt": b"sea"})
    volume.refresh_from_db()
    files.file_delete(volume, "b.txt")
    volume.refresh_from_db()
    return volume


def test_history_lists_generations_with_who_when_and_counts(as_user, workspace, three_generations):
    page = as_user("member").get(url(workspace, three_generations, "history/")).content.decode()
    for gen in ("#1", "#2", "#3"):
        assert gen in page
    assert "+2" in page and "~1" in page and "-1" in page and "owner" in page and "current" in page


def test_the_diff_of_a_generation_shows_added_changed_and_deleted(as_user, workspace, three_generations):
    second = as_user("member").get(url(workspace, three_generations, "history/2/")).content.decode()
    assert "+1 added" in second and "~1 changed" in second and "-0 deleted" in second
    assert "c.txt" in second and "a.txt" in second
    third = as_user("member").get(url(workspace, three_generations, "history/3/")).content.decode()
    assert "-1 deleted" in third and "b.txt" in third
    assert as_user("member").get(url(workspace, three_generations, "history/99/")).status_code == 404


def test_restore_commits_an_old_generation_as_the_newest(as_user, workspace, three_generations):
    volume = three_generations
    dialog = as_user("writer").get(url(workspace, volume, "history/1/restore/"), **HTMX).content.decode()
    assert "new generation #4" in dialog
    response = as_user("writer").post(url(workspace, volume, "history/1/restore/"), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"].endswith("/history/")
    volume.refresh_from_db()
    assert volume.generation == 4
    assert sorted(e.path for e in files.list_folder(volume)) == ["a.txt", "b.txt"]
    assert b"".join(files.open_file(volume, files.entry_at(volume, "a.txt"))) == b"one"


def test_restore_is_refused_while_leased_and_for_readers(as_user, workspace, three_generations, cast):
    from volumes.permissions import set_share

    volume = three_generations
    leases.try_acquire(volume.pk, "worker-x job 1")
    response = as_user("owner").post(url(workspace, volume, "history/1/restore/"), **HTMX)
    assert response.status_code == 409 and "worker-x job 1" in response["HX-Trigger"]
    set_share(volume, cast["reader"], "read")
    assert as_user("reader").post(url(workspace, volume, "history/1/restore/")).status_code == 403


def test_prune_drops_old_generations_for_those_who_may_delete(as_user, workspace, three_generations, cast):
    from volumes.models import VolumeCommit
    from volumes.permissions import set_share

    volume = three_generations
    page = as_user("owner").get(url(workspace, volume, "history/")).content.decode()
    assert "Prune history" in page and "and younger than" in page
    dialog = as_user("owner").get(url(workspace, volume, "history/prune/"), **HTMX).content.decode()
    assert "the 2 older generations" in dialog
    set_share(volume, cast["reader"], "read")
    assert as_user("reader").post(url(workspace, volume, "history/prune/")).status_code == 403
    response = as_user("owner").post(url(workspace, volume, "history/prune/"), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"].endswith("/history/")
    assert list(VolumeCommit.objects.filter(volume=volume).values_list("generation", flat=True)) == [3]
