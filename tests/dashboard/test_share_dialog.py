"""The share dialog: only for those who may share; typeahead; add, change and remove shares."""
import pytest

from volumes.permissions import access, set_share, shares_of

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def test_the_dialog_is_offered_to_the_owner_and_admins_only(as_user, workspace, volume):
    for who in ["owner", "admin"]:
        assert b"shares/" in as_user(who).get(url(workspace, volume)).content
        assert as_user(who).get(url(workspace, volume, "shares/"), **HTMX).status_code == 200
    for who in ["writer", "member"]:
        assert b"shares/" not in as_user(who).get(url(workspace, volume)).content
        assert as_user(who).get(url(workspace, volume, "shares/"), **HTMX).status_code == 403


def test_a_volume_without_shares_explains_that_it_is_open_to_all_members(as_user, workspace, volume):
    dialog = as_user("owner").get(url(workspace, volume, "shares/"), **HTMX).content.decode()
    assert "Open to all members" in dialog


def test_the_typeahead_suggests_workspace_users_and_groups_only(as_user, workspace, team_group, cast):
    html = as_user("owner").get(url(workspace, rest="principals/?who=e"), **HTMX).content.decode()
    assert "reader" in html and "writer" in html and "team" in html and "outsider" not in html
    assert f'data-pick="user:{cast["reader"].pk}"' in html and f'data-pick="group:{team_group.pk}"' in html
    assert b"No user or group" in as_user("owner").get(url(workspace, rest="principals/?who=zzz")).content


def test_sharing_read_only_lets_the_reader_see_but_not_write_and_hides_it_from_others(as_user, workspace, volume, cast):
    response = as_user("owner").post(url(workspace, volume, "shares/"),
                                     {"principal": f"user:{cast['reader'].pk}", "who": "reader", "level": "read"}, **HTMX)
    assert response.status_code == 200 and "Shared with reader (read-only)" in response["HX-Trigger"]
    assert "reader" in response.content.decode() and "Open to all members" not in response.content.decode()
    assert access(cast["reader"], volume).level == "read"
    assert not access(cast["member"], volume).can_see


def test_a_group_can_be_shared_by_typing_its_name(as_user, workspace, volume, team_group, cast):
    response = as_user("admin").post(url(workspace, volume, "shares/"), {"who": "TEAM", "level": "write"}, **HTMX)
    assert response.status_code == 200
    assert [(s.kind, s.name, s.access) for s in shares_of(volume)] == [("group", "team", "write")]
    assert access(cast["groupie"], volume).can_write


def test_an_unknown_or_outside_principal_is_refused_with_a_hint(as_user, workspace, volume, cast):
    for data in [{"who": "nobody", "level": "read"}, {"who": "outsider", "level": "read"},
                 {"principal": f"user:{cast['outsider'].pk}", "who": "", "level": "read"}]:
        response = as_user("owner").post(url(workspace, volume, "shares/"), data, **HTMX)
        assert response.status_code == 422 and b"pick one from the suggestions" in response.content
    assert shares_of(volume) == []


def test_a_share_can_be_changed_and_removed(as_user, workspace, volume, cast):
    set_share(volume, cast["reader"], "read")
    principal = f"user:{cast['reader'].pk}"
    changed = as_user("owner").post(url(workspace, volume, "shares/"),
                                    {"change": "1", "principal": principal, "level": "write"}, **HTMX)
    assert changed.status_code == 200 and access(cast["reader"], volume).can_write
    removed = as_user("owner").post(url(workspace, volume, "shares/"),
                                    {"change": "1", "principal": principal, "level": "remove"}, **HTMX)
    assert removed.status_code == 200 and shares_of(volume) == []
    assert b"Open to all members" in removed.content
