"""Share writes: a member or group of the volume's workspace gets read or write, replaced or removed;
nobody outside the workspace ever gets a share."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from volumes import permissions
from volumes.exceptions import NotFound, VolumesError
from volumes.services.shares import share_set

pytestmark = pytest.mark.django_db


def shares(volume) -> list[tuple[str, str, str]]:
    return [(s.kind, s.name, s.access) for s in permissions.shares_of(volume)]


def test_a_share_is_given_replaced_and_removed(volume, cast, team_group):
    share_set(volume, cast["reader"], "read")
    share_set(volume, team_group, "write")
    assert shares(volume) == [("group", "team", "write"), ("user", "reader", "read")]
    share_set(volume, cast["reader"], "write")
    share_set(volume, team_group, None)
    assert shares(volume) == [("user", "reader", "write")]


def test_it_refuses_a_user_or_group_outside_the_workspace(volume, cast):
    with pytest.raises(NotFound, match="not a member of workspace 'acme'"):
        share_set(volume, cast["outsider"], "read")
    with pytest.raises(NotFound, match="no member of workspace 'acme'"):
        share_set(volume, Group.objects.create(name="strangers"), "read")
    assert shares(volume) == []


def test_it_refuses_an_unknown_access_level(volume, cast):
    with pytest.raises(VolumesError, match="'read' or 'write'"):
        share_set(volume, cast["reader"], "admin")
