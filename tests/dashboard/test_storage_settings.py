"""Settings > Storage: admins add storages of each kind, test them, pick the volume storage."""
import pytest

from tests.servers import S3_REGION, backend_config

from volumes.models import ObjectStorage

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def page(workspace, rest=""):
    return url(workspace, rest=f"settings/storage/{rest}")


@pytest.fixture
def base(settings, tmp_path):
    """The installation's base folder for workspace storages; acme's admins may use base/acme/..."""
    folder = tmp_path / "base"
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_BASE_DIR": folder}
    return folder


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


def test_an_admin_adds_a_secondary_filesystem_storage_and_tests_it(as_user, workspace, base):
    root = base / "acme" / "second"
    response = as_user("admin").post(page(workspace, "new/"), {"name": "archive", "kind": "filesystem",
                                                              "cfg_root": str(root)}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == page(workspace)
    storage = ObjectStorage.objects.get(name="archive")
    assert (storage.kind, storage.config, storage.is_primary) == ("filesystem", {"root": str(root)}, False)
    ok = as_user("admin").post(page(workspace, f"{storage.pk}/test/"), **HTMX).content.decode()
    assert "Works" in ok


def test_a_failing_connection_says_what_failed_but_not_what_is_on_the_disk(as_user, workspace, base):
    (base / "acme").mkdir(parents=True)
    blocker = base / "acme" / "a-file"
    blocker.write_text("not a folder")
    result = as_user("admin").post(page(workspace, "test/"), {"name": "bad", "kind": "filesystem",
                                                             "cfg_root": str(blocker / "sub")}, **HTMX)
    html = result.content.decode()
    assert result.status_code == 200 and "Failed" in html
    assert "Writing a test object failed" in html and "a-file" not in html and "not a folder" not in html


def test_required_fields_of_each_kind_are_checked(as_user, workspace):
    response = as_user("admin").post(page(workspace, "new/"), {"name": "s3", "kind": "s3"}, **HTMX)
    assert response.status_code == 422 and b"Required for this kind of storage" in response.content
    response = as_user("admin").post(page(workspace, "new/"), {"name": "az", "kind": "azure", "cfg_container": "c"},
                                     **HTMX)
    assert response.status_code == 422


def test_secrets_are_never_shown_and_kept_when_left_empty(as_user, workspace, request, tmp_path):
    config = {**backend_config("s3", request, tmp_path), "secret_key": "TOP-SECRET"}  # moto takes any key
    storage = ObjectStorage.objects.create(workspace=workspace, name="bucket", kind="s3", config=config)
    form = as_user("admin").get(page(workspace, f"{storage.pk}/"), **HTMX).content.decode()
    assert "TOP-SECRET" not in form and "saved; leave empty to keep" in form
    renamed = {**config, "bucket": backend_config("s3", request, tmp_path)["bucket"]}
    response = as_user("admin").post(page(workspace, f"{storage.pk}/"), {
        "name": "bucket", "kind": "s3", "cfg_bucket": renamed["bucket"], "cfg_endpoint_url": config["endpoint_url"],
        "cfg_region": S3_REGION, "cfg_access_key": config["access_key"]}, **HTMX)
    assert response.status_code == 200, response.content
    storage.refresh_from_db()
    assert storage.config == renamed  # the secret key was kept


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


def test_an_azure_storage_by_account_name_and_key_is_accepted(as_user, workspace, azurite, request, tmp_path):
    container = backend_config("azure", request, tmp_path)["container"]
    response = as_user("admin").post(page(workspace, "new/"), {
        "name": "blobs", "kind": "azure", "cfg_container": container, "cfg_account_name": azurite.account_name,
        "cfg_account_key": azurite.account_key, "cfg_endpoint": azurite.endpoint}, **HTMX)
    assert response.status_code == 200, response.content
    storage = ObjectStorage.objects.get(name="blobs")
    assert storage.config == {"container": container, "account_name": azurite.account_name,
                              "account_key": azurite.account_key, "endpoint": azurite.endpoint}
    assert f"az://{container} at {azurite.endpoint}" in as_user("admin").get(page(workspace)).content.decode()


# Issue 19: storage settings are not a probe of the server; issue 18: every save is checked.

def test_an_admin_cannot_save_or_test_a_folder_outside_the_workspace_folder(as_user, workspace, base, tmp_path):
    other = tmp_path / "other-workspace-storage"
    other.mkdir()
    for path in ("new/", "test/"):
        response = as_user("admin").post(page(workspace, path), {"name": "probe", "kind": "filesystem",
                                                                "cfg_root": str(other / "sub")}, **HTMX)
        assert f"must be the folder {base / 'acme'}" in response.content.decode()
    assert not ObjectStorage.objects.filter(name="probe").exists()
    assert list(other.iterdir()) == []  # nothing created or written there


def test_a_superuser_may_use_any_folder(as_user, workspace, cast, base, tmp_path):
    cast["admin"].is_superuser = True
    cast["admin"].save()
    response = as_user("admin").post(page(workspace, "new/"), {"name": "anywhere", "kind": "filesystem",
                                                              "cfg_root": str(tmp_path / "anywhere")}, **HTMX)
    assert response.status_code == 200, response.content
    assert ObjectStorage.objects.filter(name="anywhere").exists()


def test_a_local_endpoint_is_refused_without_the_operators_allowance(as_user, workspace, settings, request, tmp_path):
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_ALLOWED_HOSTS": []}
    config = backend_config("s3", request, tmp_path)  # a real, working bucket on 127.0.0.1
    data = {"name": "local", "kind": "s3", "cfg_bucket": config["bucket"], "cfg_endpoint_url": config["endpoint_url"],
            "cfg_access_key": config["access_key"], "cfg_secret_key": config["secret_key"]}
    for path in ("new/", "test/"):
        html = as_user("admin").post(page(workspace, path), data, **HTMX).content.decode()
        assert "loopback or link-local" in html and "VOLUMES_STORAGE_ALLOWED_HOSTS" in html
    assert not ObjectStorage.objects.filter(name="local").exists()


def test_saving_checks_the_bucket_and_says_what_failed(as_user, workspace, request, tmp_path):
    config = backend_config("s3", request, tmp_path, create=False)
    response = as_user("admin").post(page(workspace, "new/"), {
        "name": "nobucket", "kind": "s3", "cfg_bucket": config["bucket"], "cfg_endpoint_url": config["endpoint_url"],
        "cfg_access_key": config["access_key"], "cfg_secret_key": config["secret_key"]}, **HTMX)
    assert response.status_code == 422 and f"the bucket &#x27;{config['bucket']}&#x27; does not exist" in \
        response.content.decode()
    assert not ObjectStorage.objects.filter(name="nobucket").exists()


def test_the_folder_of_a_storage_holding_volumes_cannot_change(as_user, workspace, volume, base):
    storage = volume.storage
    response = as_user("admin").post(page(workspace, f"{storage.pk}/"), {
        "name": storage.name, "kind": "filesystem", "cfg_root": str(base / "acme" / "new-place"),
        "is_primary": "on"}, **HTMX)
    assert response.status_code == 422 and "holds 1 volume" in response.content.decode()
    storage.refresh_from_db()
    assert storage.config["root"] != str(base / "acme" / "new-place")


def test_renaming_a_storage_the_operator_set_up_needs_no_new_check(as_user, workspace, volume):
    storage = volume.storage
    response = as_user("admin").post(page(workspace, f"{storage.pk}/"), {
        "name": "renamed", "kind": "filesystem", "cfg_root": storage.config["root"], "is_primary": "on"}, **HTMX)
    assert response.status_code == 200, response.content
    storage.refresh_from_db()
    assert storage.name == "renamed"
