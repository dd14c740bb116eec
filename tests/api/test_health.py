"""`GET .../health/` and `POST .../health/repair/`, and `volume fsck` against a live server."""
import io

import pytest
from django.core.management import CommandError, call_command

from volumes.models import Volume
from volumes.permissions import set_share

from ..services.test_health import damaged  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

V = "/api/w/acme/volumes/training-data/"


def test_the_api_reports_and_repairs_a_damaged_volume(client_for, damaged, cast):  # noqa: F811
    report = client_for("owner").get(V + "health/")
    assert report.status_code == 200, report.content
    body = report.json()
    assert body["ok"] is False and body["hashes_checked"] is True
    assert {p["path"]: p["what"] for p in body["problems"]}["report\\2024.csv"] == "entry"
    quick = client_for("owner").get(V + "health/?quick=1").json()
    assert quick["hashes_checked"] is False and "flipped.txt" not in {p["path"] for p in quick["problems"]}
    set_share(damaged, cast["reader"], "read")
    assert client_for("reader").get(V + "health/").status_code == 200
    assert client_for("reader").post(V + "health/repair/").status_code == 403
    assert client_for("outsider").get(V + "health/").status_code == 404
    repaired = client_for("owner").post(V + "health/repair/")
    assert repaired.status_code == 200 and repaired.json()["repaired_generation"] == damaged.generation + 1
    assert client_for("owner").get(V + "health/").json()["ok"] is True


def test_volume_fsck_against_a_live_server(live_server, damaged, cast):  # noqa: F811
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=cast["owner"]).key
    remote = ["-w", "acme", "--server", live_server.url, "--token", token, "fsck", "training-data"]
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("volume", *remote, stdout=out, stderr=io.StringIO())
    assert "has 5 problems" in out.getvalue()
    out = io.StringIO()
    call_command("volume", *remote, "--repair", stdout=out, stderr=io.StringIO())
    assert "repaired: generation" in out.getvalue()
    assert Volume.objects.get(pk=damaged.pk).generation == damaged.generation + 1
