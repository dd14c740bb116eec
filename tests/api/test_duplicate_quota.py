"""Duplicate a volume and set its size cap through the API and `manage.py volume` (here and remotely)."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from volumes.models import Volume, VolumeCommit
from volumes.permissions import set_share
from volumes.services import files

from .helpers import seed

pytestmark = pytest.mark.django_db
URL = "/api/w/acme/volumes/"


def volume_cmd(*args) -> str:
    out = io.StringIO()
    call_command("volume", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_reader_duplicates_any_generation_and_owns_the_copy(client_for, volume, cast):
    seed(volume, {"a.txt": b"first"}, user=cast["owner"])
    seed(volume, {"a.txt": b"second", "b.txt": b"bee"}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")
    answer = client_for("reader").post(URL + "training-data/duplicate/", {"name": "mine", "generation": 1},
                                       format="json")
    assert answer.status_code == 201, answer.json()
    row = answer.json()
    assert (row["name"], row["owner"], row["generation"], row["file_count"]) == ("mine", "reader", 1, 1)
    history = client_for("reader").get(URL + "mine/history/").json()["results"]
    assert [h["message"] for h in history] == ["duplicated from training-data generation 1 by reader"]
    copy = Volume.objects.get(name="mine")
    assert files.entry_at(copy, "a.txt").hash == files.entry_at(volume, "a.txt", generation=1).hash
    # Without a generation: the current one.
    assert client_for("owner").post(URL + "training-data/duplicate/", {"name": "now"}, format="json").json()[
        "file_count"] == 2


def test_duplicating_needs_read_access_and_a_free_name(client_for, volume, cast):
    seed(volume, {"a.txt": b"a"}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")
    assert client_for("member").post(URL + "training-data/duplicate/", {"name": "x"}, format="json").status_code == 403
    assert client_for("outsider").post(URL + "training-data/duplicate/", {"name": "x"},
                                       format="json").status_code == 404
    taken = client_for("reader").post(URL + "training-data/duplicate/", {"name": "Training-Data"}, format="json")
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    bad = client_for("reader").post(URL + "training-data/duplicate/", {"name": "a"}, format="json")
    assert bad.status_code == 400
    gone = client_for("reader").post(URL + "training-data/duplicate/", {"name": "x", "generation": 7}, format="json")
    assert gone.status_code == 404 and "no generation 7" in gone.json()["detail"]
    assert not Volume.all_objects.filter(name="x").exists()


def test_owners_and_admins_set_and_clear_the_cap_and_others_may_not(client_for, volume, cast):
    seed(volume, {"a.txt": b"x" * 900}, user=cast["owner"])
    set_share(volume, cast["writer"], "write")
    answer = client_for("owner").put(URL + "training-data/quota/", {"max_size_bytes": 1000}, format="json")
    assert answer.status_code == 200, answer.json()
    row = answer.json()
    assert row["max_size_bytes"] == 1000
    assert row["usage"] == {"stored_bytes": 900, "cap_bytes": 1000, "percent": 90, "level": "warning"}
    refused = client_for("writer").put(URL + "training-data/quota/", {"max_size_bytes": None}, format="json")
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    negative = client_for("admin").put(URL + "training-data/quota/", {"max_size_bytes": -1}, format="json")
    assert negative.status_code == 400
    cleared = client_for("admin").put(URL + "training-data/quota/", {"max_size_bytes": None}, format="json")
    assert cleared.json()["max_size_bytes"] is None and cleared.json()["usage"] is None
    assert client_for("owner").get(URL).json()[0]["usage"] is None


def test_the_cli_duplicates_and_sets_the_quota(volume, cast):
    seed(volume, {"a.txt": b"x" * 900}, user=cast["owner"])
    seed(volume, {"b.txt": b"y" * 100}, user=cast["owner"])
    run = lambda *a: volume_cmd("-w", "acme", "-u", "owner", *a)  # noqa: E731
    assert "duplicated training-data generation 1 as copy" in run("duplicate", "training-data", "copy",
                                                                   "--generation", "1")
    assert VolumeCommit.objects.get(volume__name="copy").message == "duplicated from training-data generation 1 by owner"
    assert "duplicated training-data as now (2 files" in run("duplicate", "training-data", "now")
    assert "training-data: limit 1.2 kB" in run("quota", "training-data", "1.2 kB")
    assert Volume.objects.get(name="training-data").max_size_bytes == 1200
    assert "stores 1.0 kB (83 %)" in run("quota", "training-data")
    assert "warning" in run("quota", "training-data")
    assert "no limit" in run("quota", "training-data", "none")
    assert Volume.objects.get(name="training-data").max_size_bytes is None
    with pytest.raises(CommandError, match="0 or more"):
        run("quota", "training-data", "-3 GB")
    set_share(volume, cast["writer"], "write")
    with pytest.raises(CommandError, match="owner"):
        volume_cmd("-w", "acme", "-u", "writer", "quota", "training-data", "5 GB")
    assert json.loads(run("--json", "quota", "training-data"))["max_size_bytes"] is None


@pytest.mark.django_db(transaction=True)
def test_the_cli_against_a_remote_server_duplicates_and_sets_the_quota(live_server, volume, cast):
    from rest_framework.authtoken.models import Token

    seed(volume, {"a.txt": b"x" * 900}, user=cast["owner"])
    token = Token.objects.create(user=cast["owner"]).key
    run = lambda *a: volume_cmd("-w", "acme", "--server", live_server.url, "--token", token, *a)  # noqa: E731
    assert "as copy" in run("duplicate", "training-data", "copy")
    assert Volume.objects.get(name="copy").file_count == 1
    assert "limit 1.0 kB" in run("quota", "training-data", "1000")
    assert "stores 900 bytes (90 %)" in run("quota", "training-data")
    with pytest.raises(CommandError, match="0 or more|not a size"):
        run("quota", "training-data", "-1")
