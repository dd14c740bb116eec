"""Settings > Members and Account > API tokens: admins add, re-role and remove members (with a link
that sets a password); everyone creates and revokes their own tokens, each shown once."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from volumes.models import ApiToken, Job, Membership, Workspace
from volumes.services.workspaces import workspace_ensure

from .conftest import url

pytestmark = pytest.mark.django_db


def link_in(html: str) -> str:
    match = re.search(r'value="(http://testserver/set-password/[^"]+)"', html)
    assert match, "no password link on the page"
    return match.group(1).removeprefix("http://testserver")


def test_an_admin_adds_a_new_member_who_sets_a_password_with_the_link(as_user, workspace):
    page = as_user("admin").post(url(workspace, rest="settings/members/"), {"username": "bob", "role": "member"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "bob was added" in html
    link = link_in(html)
    bob = get_user_model().objects.get(username="bob")
    assert not bob.has_usable_password() and Membership.objects.get(user=bob).role == "member"

    visitor = Client()
    form = visitor.get(link, follow=True)
    assert b"Set your password" in form.content
    done = visitor.post(form.redirect_chain[-1][0], {"new_password1": "a-long-secret-42", "new_password2": "a-long-secret-42"})
    assert done.status_code == 302 and done["Location"] == "/login/"
    bob.refresh_from_db()
    assert bob.check_password("a-long-secret-42")
    again = Client().get(link, follow=True)  # used once: never again
    assert b"does not work any more" in again.content


def test_no_password_link_for_a_user_of_other_workspaces(as_user, workspace, cast):
    workspace_ensure("other", members=["carol"])
    page = as_user("admin").post(url(workspace, rest="settings/members/"), {"username": "carol"})
    assert b"carol was added" in page.content and b"/set-password/" not in page.content
    carol = get_user_model().objects.get(username="carol")
    refused = as_user("admin").post(url(workspace, rest=f"settings/members/{carol.pk}/link/"))
    assert refused.status_code == 400 and b"/set-password/" not in refused.content
    cast["owner"].set_password("owner-has-one-7")
    cast["owner"].save()
    assert as_user("admin").post(url(workspace, rest=f"settings/members/{cast['owner'].pk}/link/")).status_code == 400


def test_only_admins_see_members_and_names_are_checked(as_user, workspace, cast):
    assert as_user("member").get(url(workspace, rest="settings/members/")).status_code == 403
    assert as_user("outsider").get(url(workspace, rest="settings/members/")).status_code == 404
    bad = as_user("admin").post(url(workspace, rest="settings/members/"), {"username": "bad name!"})
    assert bad.status_code == 422 and b"not a valid user name" in bad.content
    dup = as_user("admin").post(url(workspace, rest="settings/members/"), {"username": "owner"})
    assert dup.status_code == 422 and b"already a member" in dup.content


def test_roles_change_but_the_last_admin_stays(as_user, workspace, cast):
    client = as_user("admin")
    client.post(url(workspace, rest=f"settings/members/{cast['owner'].pk}/role/"), {"role": "admin"})
    assert Membership.objects.get(workspace=workspace, user=cast["owner"]).role == "admin"
    client.post(url(workspace, rest=f"settings/members/{cast['owner'].pk}/role/"), {"role": "member"})
    last = client.post(url(workspace, rest=f"settings/members/{cast['admin'].pk}/role/"), {"role": "member"})
    assert last.status_code == 400 and b"last admin" in last.content
    assert Membership.objects.get(workspace=workspace, user=cast["admin"]).role == "admin"
    assert client.post(url(workspace, rest=f"settings/members/{cast['admin'].pk}/remove/")).status_code == 400


def test_removing_a_member_cancels_their_queued_jobs(as_user, workspace, cast):
    queued = Job.objects.create(workspace=workspace, user=cast["writer"], language="python", content="x")
    done = as_user("admin").post(url(workspace, rest=f"settings/members/{cast['writer'].pk}/remove/"))
    assert done.status_code == 302
    assert not Membership.objects.filter(workspace=workspace, user=cast["writer"]).exists()
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert as_user("writer").get(url(workspace, rest="assets/volumes/")).status_code == 404


def test_a_user_creates_a_token_shown_once_uses_it_and_revokes_it(as_user, workspace, cast):
    client = as_user("reader")
    page = client.post("/account/tokens/", {"name": "laptop"}, follow=True)
    key = re.search(r'id="token-value"', page.content.decode()) and re.search(
        r'value="(vol_[^"]+)"', page.content.decode()).group(1)
    assert page["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=cast["reader"])
    assert token.name == "laptop" and key not in token.key_hash and token.key_hash != key
    assert key.encode() not in client.get("/account/tokens/").content  # never shown again

    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(f"/api/w/{workspace.pk}/volumes/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None

    # Another user cannot revoke it; its owner can, and then it is refused.
    assert as_user("writer").post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    assert api.get(f"/api/w/{workspace.pk}/volumes/").status_code == 401


def test_create_workspace_says_how_a_new_member_sets_a_password(tmp_path):
    out = io.StringIO()
    call_command("create_workspace", "team", "--member", "bob", "--storage", f"file://{tmp_path}", stdout=out)
    text = out.getvalue()
    assert "bob has no password yet" in text
    assert re.search(r"/set-password/[^/\s]+/[^/\s]+/", text)
    assert "changepassword bob" in text
    out = io.StringIO()  # once bob has a password, nothing is said
    bob = get_user_model().objects.get(username="bob")
    bob.set_password("x-long-secret-9")
    bob.save()
    call_command("create_workspace", "team", "--member", "bob", stdout=out)
    assert "no password" not in out.getvalue()
