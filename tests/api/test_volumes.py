"""Volumes through the API: list, create, detail, delete (refused while leased), auth."""
import pytest

from volumes.engine import leases
from volumes.models import Volume

from .helpers import seed

pytestmark = pytest.mark.django_db

URL = "/api/w/acme/volumes/"


def test_it_lists_volumes_with_size_files_owner_and_lease(owner_api, volume, cast):
    seed(volume, {"a.txt": b"hello", "dir/b.bin": b"12345678"}, user=cast["owner"])
    lease = leases.try_acquire(volume.pk, "worker-7 job 3")
    response = owner_api.get(URL)
    assert response.status_code == 200
    [row] = response.json()
    assert row["name"] == "training-data" and row["owner"] == "owner"
    assert (row["size_bytes"], row["file_count"], row["generation"]) == (13, 2, 2)
    assert row["leased"] is True and row["lease"]["holder"] == "worker-7 job 3"
    assert row["access"]["level"] == "write" and row["access"]["can_share"] is True
    assert row["last_used_at"] is not None
    leases.release(lease)
    assert owner_api.get(URL).json()[0]["lease"] is None


def test_it_creates_a_volume_owned_by_the_caller(client_for, workspace):
    response = client_for("member").post(URL, {"name": "fresh-data"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["owner"] == "member"
    assert Volume.objects.get(name="fresh-data").owner.username == "member"


@pytest.mark.parametrize("name", ["x", "-bad", "has space", "a/b", "..", "é-accent"])
def test_it_refuses_bad_volume_names_with_400(owner_api, workspace, name):
    response = owner_api.post(URL, {"name": name}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "invalid_name"


def test_names_are_unique_without_regard_to_case(owner_api, volume):
    response = owner_api.post(URL, {"name": "TRAINING-data"}, format="json")
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


def test_the_community_edition_limits_volumes_per_workspace(owner_api, workspace, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_VOLUMES_PER_WORKSPACE": 2}
    assert [owner_api.post(URL, {"name": f"v{i}x"}, format="json").status_code for i in range(3)] == [201, 201, 413]


def test_detail_and_delete(owner_api, volume, storage_root, cast):
    seed(volume, {"a.txt": b"a"}, user=cast["owner"])
    assert owner_api.get(URL + "training-data/").json()["file_count"] == 1
    assert any(storage_root.rglob("*"))
    response = owner_api.delete(URL + "training-data/")
    assert response.status_code == 204
    assert not Volume.objects.exists()  # in the trash (tests/api/test_trash.py)
    assert owner_api.get(URL + "training-data/").status_code == 404
    assert owner_api.delete("/api/w/acme/trash/training-data/").status_code == 204
    assert not [p for p in storage_root.rglob("*") if p.is_file()]  # every object under the prefix is gone


def test_a_leased_volume_cannot_be_deleted_and_the_answer_names_the_holder(owner_api, volume):
    lease = leases.try_acquire(volume.pk, "celery-1 job 42")
    response = owner_api.delete(URL + "training-data/")
    assert response.status_code == 409
    data = response.json()
    assert data["error"] == "lease_held" and "celery-1 job 42" in data["holder"]
    assert Volume.objects.filter(pk=volume.pk).exists()
    leases.release(lease)
    assert owner_api.delete(URL + "training-data/").status_code == 204


def test_anonymous_callers_get_401_and_non_members_404(client_for, volume):
    anonymous = client_for(None).get(URL)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Token")
    for url in [URL, URL + "training-data/", "/api/w/nope/volumes/"]:
        response = client_for("outsider").get(url)
        assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_session_auth_works_for_the_dashboard(client, cast, volume):
    client.force_login(cast["owner"])
    assert client.get(URL).status_code == 200
    # Unsafe methods with a session need the CSRF token.
    from rest_framework.test import APIClient

    api = APIClient(enforce_csrf_checks=True)
    api.force_login(cast["owner"])
    assert api.post(URL, {"name": "csrf-less"}, format="json").status_code == 403


@pytest.mark.parametrize("who", ["outsider", "owner"])
def test_options_describes_no_view_to_anyone(client_for, volume, who):
    """OPTIONS would answer 200 with the view's name and formats before any workspace check: nothing we use,
    and an answer a non-member should not get for another workspace's URL."""
    for url in (URL, URL + "training-data/", URL + "training-data/files/a.txt"):
        response = client_for(who).options(url)
        assert response.status_code == 405, (url, response.status_code, response.content[:200])
