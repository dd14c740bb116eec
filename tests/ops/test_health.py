"""/healthz: ok or not ok for anyone; which check failed only for staff, the monitoring token or allowed networks."""
import pytest

from volumes.models import ObjectStorage, Workspace
from volumes.ops import health

from ..servers import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(health, "CACHE_SECONDS", 0)


@pytest.fixture
def monitoring(settings):
    settings.VOLUMES = {**settings.VOLUMES, "MONITORING_TOKEN": "s3cret", "MONITORING_ALLOW_NETWORKS": ["10.9.0.0/16"]}


def test_anonymous_callers_get_ok_and_nothing_else(client, workspace):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response.headers["Cache-Control"] or "max-age=0" in response.headers["Cache-Control"]


def test_staff_the_token_and_allowed_networks_see_every_check(client, workspace, cast, monitoring):
    by_token = client.get("/healthz", HTTP_AUTHORIZATION="Bearer s3cret").json()
    assert by_token["status"] == "ok"
    checks = by_token["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    [storage] = [name for name in checks if name.startswith("storage ")]
    assert "acme" in storage and checks[storage]["ok"]
    assert "checks" in client.get("/healthz", REMOTE_ADDR="10.9.3.4").json()
    assert "checks" not in client.get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").json()
    client.force_login(cast["admin"])  # a workspace admin is not staff of the installation
    assert "checks" not in client.get("/healthz").json()
    cast["admin"].is_staff = True
    cast["admin"].save()
    assert "checks" in client.get("/healthz").json()


def test_an_unreachable_storage_makes_it_not_ok_without_telling_anonymous_callers_which(
        client, workspace, monitoring):
    dead = ObjectStorage.objects.create(
        workspace=workspace, name="dead", kind="s3",
        config={"bucket": "gone", "endpoint_url": f"http://127.0.0.1:{free_port()}", "access_key": "a",
                "secret_key": "b", "region": "us-east-1"})
    Workspace.objects.filter(pk=workspace.pk).update(volume_storage=dead)
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "not ok"}
    detailed = client.get("/healthz", HTTP_AUTHORIZATION="Bearer s3cret")
    assert detailed.status_code == 503
    checks = detailed.json()["checks"]
    assert checks["database"]["ok"] and not checks[f"storage {dead.pk} (acme: dead)"]["ok"]
    assert "gone" not in anonymous.content.decode()


def test_healthz_is_not_redirected_to_https(client, workspace, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
