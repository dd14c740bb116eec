"""Storages over the API: admins only, the same rules and live check as the dashboard and the CLI."""
from __future__ import annotations

import pytest

from tests.servers import backend_config, free_port
from volumes.models import ObjectStorage

pytestmark = pytest.mark.django_db


def base_url(workspace, rest=""):
    return f"/api/w/{workspace.pk}/storages/{rest}"


def s3_url(config: dict) -> str:
    return (f"s3://{config['bucket']}/vols?endpoint_url={config['endpoint_url']}&region={config['region']}"
            f"&access_key={config['access_key']}&secret_key={config['secret_key']}")


def test_admins_list_storages_without_secrets(client_for, workspace):
    response = client_for("admin").get(base_url(workspace))
    assert response.status_code == 200
    [row] = response.json()
    assert row["name"] == "primary" and row["is_volume_storage"] and row["location"].startswith("file://")
    assert client_for("member").get(base_url(workspace)).status_code == 403
    assert client_for("outsider").get(base_url(workspace)).status_code == 404


def test_an_admin_adds_an_s3_storage_by_url_after_it_is_checked(client_for, workspace, request, tmp_path):
    config = backend_config("s3", request, tmp_path)
    response = client_for("admin").post(base_url(workspace), {"name": "bucket", "url": s3_url(config)}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "s3" and "testing" not in str(body) and body["location"].startswith(f"s3://{config['bucket']}/vols")
    stored = ObjectStorage.objects.get(name="bucket")
    assert stored.config["secret_key"] == "testing" and stored.config["prefix"] == "vols"


def test_a_missing_bucket_or_a_dead_endpoint_is_refused_naming_what_failed(client_for, workspace, request, tmp_path):
    missing = backend_config("s3", request, tmp_path, create=False)
    response = client_for("admin").post(base_url(workspace), {"name": "nobucket", "url": s3_url(missing)},
                                        format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "storage_check_failed" and "does not exist" in response.json()["detail"]
    dead = {**missing, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    response = client_for("admin").post(base_url(workspace, "test/"), {"url": s3_url(dead)}, format="json")
    assert response.status_code == 400 and "cannot be reached" in response.json()["detail"]
    assert not ObjectStorage.objects.filter(name="nobucket").exists()


def test_the_api_refuses_folders_outside_the_workspace_folder_and_local_endpoints(client_for, workspace, settings,
                                                                                  tmp_path, request):
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_BASE_DIR": tmp_path / "base", "STORAGE_ALLOWED_HOSTS": []}
    response = client_for("admin").post(base_url(workspace), {"name": "x", "url": f"file://{tmp_path}/elsewhere"},
                                        format="json")
    assert response.status_code == 400 and response.json()["error"] == "storage_refused"
    assert not (tmp_path / "elsewhere").exists()
    config = backend_config("s3", request, tmp_path)
    response = client_for("admin").post(base_url(workspace, "test/"), {"url": s3_url(config)}, format="json")
    assert response.status_code == 400 and "loopback or link-local" in response.json()["detail"]
    response = client_for("admin").post(base_url(workspace), {"name": "mine", "url": f"file://{tmp_path}/base/acme/v"},
                                        format="json")
    assert response.status_code == 201, response.json()


def test_a_storage_holding_volumes_keeps_its_location(client_for, workspace, volume, tmp_path, cast):
    storage = volume.storage
    cast["admin"].is_superuser = True  # any folder, so only the volume rule can refuse
    cast["admin"].save()
    response = client_for("admin").patch(base_url(workspace, f"{storage.pk}/"),
                                         {"url": f"file://{tmp_path}/moved"}, format="json")
    assert response.status_code == 409 and "holds 1 volume" in response.json()["detail"]
    response = client_for("admin").patch(base_url(workspace, f"{storage.pk}/"), {"name": "renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "renamed"
    assert client_for("admin").post(base_url(workspace, f"{storage.pk}/test/")).json() == {"ok": True,
                                                                                            "detail": "works"}
    assert client_for("admin").delete(base_url(workspace, f"{storage.pk}/")).status_code == 409
