"""Settings > Storage: admins add storages of each kind, test them, pick the volume storage."""
import pytest

from volumes.models import ObjectStorage

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def page(workspace, rest=""):
    return url(workspace, rest=f"settings/storage/{rest}")


def test_the_page_lists_storages_and_the_volume_storage(as_user, workspace):
    html = as_user("admin").get(page(workspace)).content.decode()
    assert "primary" in html and "volume storage" in html and "Test connection" in html
    assert "No volume storage selected" not in html


def test_the_form_has_the_fields_of_all_four_kinds(as_user, workspace):
    html = as_user("admin").get(page(workspace, "new/"), **HTMX).content.decode()
    for kind in ("filesystem", "s3", "azure", "gcs"):
        assert f'value="{kind}"' in html
    for field in ("cfg_root", "cfg_bucket", "cfg_endpoint_url", "cfg_secret_key", "cfg_connection_string",
                  "cfg_container", "cfg_credentials_json"):
        assert f'name="{field}"' in html


def test_an_admin_adds_a_secondary_filesystem_storage_and_tests_it(as_user, workspace, tmp_path):
    root = tmp_path / "second"
    root.mkdir()
    response = as_user("admin").post(page(workspace, "new/"), {"name": "archive", "kind": "filesystem",
                                                              "cfg_root": str(root)}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == page(workspace)
    storage = ObjectStorage.objects.get(name="archive")
    assert (storage.kind, storage.config, storage.is_primary) == ("filesystem", {"root": str(root)}, False)
    ok = as_user("admin").post(page(workspace, f"{storage.pk}/test/"), **HTMX).content.decode()
    assert "Connected" in ok


def test_a_failing_connection_says_what_is_wrong(as_user, workspace, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = as_user("admin").post(page(workspace, "test/"), {"name": "bad", "kind": "filesystem",
                                                             "cfg_root": str(blocker / "sub")}, **HTMX)
    assert result.status_code == 200 and "Failed" in result.content.decode()
    assert "unavailable" in result.content.decode()


def test_required_fields_of_each_kind_are_checked(as_user, workspace):
    response = as_user("admin").post(page(workspace, "new/"), {"name": "s3", "kind": "s3"}, **HTMX)
    assert response.status_code == 422 and b"Required for this kind of storage" in response.content
    response = as_user("admin").post(page(workspace, "new/"), {"name": "az", "kind": "azure", "cfg_container": "c"},
                                     **HTMX)
    assert response.status_code == 422


def test_secrets_are_never_shown_and_kept_when_left_empty(as_user, workspace):
    storage = ObjectStorage.objects.create(workspace=workspace, name="bucket", kind="s3",
                                           config={"bucket": "bucket-one", "access_key": "AK", "secret_key": "TOP-SECRET"})
    form = as_user("admin").get(page(workspace, f"{storage.pk}/"), **HTMX).content.decode()
    assert "TOP-SECRET" not in form and "saved; leave empty to keep" in form
    as_user("admin").post(page(workspace, f"{storage.pk}/"), {"name": "bucket", "kind": "s3", "cfg_bucket": "bucket-two",
                                                             "cfg_access_key": "AK"}, **HTMX)
    storage.refresh_from_db()
    assert storage.config == {"bucket": "bucket-two", "access_key": "AK", "secret_key": "TOP-SECRET"}


def test_unselecting_the_volume_storage_warns_that_jobs_with_volumes_fail(as_user, workspace):
    response = as_user("admin").post(page(workspace, "volume-storage/"), {"storage": ""})
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.volume_storage is None
    html = as_user("admin").get(page(workspace)).content.decode()
    assert "No volume storage selected" in html and "Jobs with volume annotations fail" in html


def test_a_storage_holding_volumes_cannot_be_removed(as_user, workspace, volume):
    response = as_user("admin").post(page(workspace, f"{volume.storage_id}/delete/"), **HTMX)
    assert response.status_code == 409 and "delete them first" in response["HX-Trigger"]


def test_members_cannot_change_storage(as_user, workspace, tmp_path):
    for path, data in [("new/", {"name": "x", "kind": "filesystem", "cfg_root": str(tmp_path)}),
                       ("volume-storage/", {"storage": ""}), ("test/", {})]:
        assert as_user("member").post(page(workspace, path), data).status_code == 403
    assert as_user("outsider").post(page(workspace, "volume-storage/"), {"storage": ""}).status_code == 404
    workspace.refresh_from_db()
    assert workspace.volume_storage is not None


def test_the_factory_rules_are_explained_in_the_form(as_user, workspace):
    response = as_user("admin").post(page(workspace, "new/"), {"name": "bad-bucket", "kind": "s3", "cfg_bucket": "B!"},
                                     **HTMX)
    assert response.status_code == 422 and b"is not a valid bucket name" in response.content
    response = as_user("admin").post(page(workspace, "new/"), {"name": "half-keys", "kind": "s3", "cfg_bucket": "data",
                                                              "cfg_access_key": "AK"}, **HTMX)
    assert response.status_code == 422 and b"both the access key and the secret key" in response.content


def test_an_azure_storage_by_account_name_and_key_is_accepted(as_user, workspace):
    response = as_user("admin").post(page(workspace, "new/"), {
        "name": "blobs", "kind": "azure", "cfg_container": "volumes", "cfg_account_name": "acct",
        "cfg_account_key": "a2V5", "cfg_endpoint": "http://127.0.0.1:10000/acct"}, **HTMX)
    assert response.status_code == 200, response.content
    storage = ObjectStorage.objects.get(name="blobs")
    assert storage.config == {"container": "volumes", "account_name": "acct", "account_key": "a2V5",
                              "endpoint": "http://127.0.0.1:10000/acct"}
    assert "az://volumes at http://127.0.0.1:10000/acct" in as_user("admin").get(page(workspace)).content.decode()
