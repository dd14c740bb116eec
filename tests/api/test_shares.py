"""Shares through the API: grant, change, list and remove, for users and groups."""
import pytest

from volumes.permissions import access

pytestmark = pytest.mark.django_db

URL = "/api/w/acme/volumes/training-data/shares/"


def test_the_owner_shares_with_a_user_and_a_group_and_removes_them(owner_api, volume, cast, team_group):
    assert owner_api.get(URL).json() == []
    response = owner_api.post(URL, {"user": "reader", "access": "read"}, format="json")
    assert response.status_code == 200
    assert response.json() == [{"kind": "user", "name": "reader", "access": "read"}]
    owner_api.post(URL, {"group": "team", "access": "write"}, format="json")
    owner_api.post(URL, {"user": "reader", "access": "write"}, format="json")  # replaces the read share
    assert owner_api.get(URL).json() == [
        {"kind": "group", "name": "team", "access": "write"},
        {"kind": "user", "name": "reader", "access": "write"},
    ]
    assert access(cast["groupie"], volume).can_write and not access(cast["member"], volume).can_see
    assert owner_api.delete(URL, {"group": "team"}, format="json").status_code == 200
    assert owner_api.delete(URL + "?user=reader").json() == []
    assert access(cast["member"], volume).can_write  # no shares left: open to members again


@pytest.mark.parametrize("payload", [
    {"user": "reader"},
    {"user": "reader", "access": "admin"},
    {"access": "read"},
    {"user": "reader", "group": "team", "access": "read"},
])
def test_it_refuses_incomplete_or_ambiguous_shares(owner_api, volume, team_group, payload):
    response = owner_api.post(URL, payload, format="json")
    assert response.status_code == 400 and "invalid input" in response.json()["detail"]


def test_only_members_and_workspace_groups_can_be_shared_with(owner_api, volume, cast, team_group):
    from django.contrib.auth.models import Group

    Group.objects.create(name="strangers").user_set.add(cast["outsider"])
    assert owner_api.post(URL, {"user": "outsider", "access": "read"}, format="json").status_code == 404
    assert owner_api.post(URL, {"group": "strangers", "access": "read"}, format="json").status_code == 404
    assert owner_api.post(URL, {"user": "nobody", "access": "read"}, format="json").status_code == 404


def test_writers_cannot_share_but_admins_can(client_for, volume):
    client_for("owner").post(URL, {"user": "writer", "access": "write"}, format="json")
    refused = client_for("writer").post(URL, {"user": "member", "access": "write"}, format="json")
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    assert client_for("admin").post(URL, {"user": "member", "access": "read"}, format="json").status_code == 200
