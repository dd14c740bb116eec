"""Members and tokens in a real browser: an admin adds bob, bob sets a password with the link,
logs in, makes a token (shown once, copied) and revokes it."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from volumes.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_invited_member_sets_a_password_and_manages_tokens(browse, workspace, cast):
    cast["admin"].set_password("pw-admin-123")
    cast["admin"].save()
    me = browse()
    page = me.page
    me.login("admin", "pw-admin-123")
    page.get_by_role("link", name="Members").click()
    page.get_by_label("User name").fill("bob")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#password-link")).to_contain_text("bob was added")
    expect(page.locator("tr[data-member=bob]")).to_contain_text("not set")
    link = page.get_by_label("Password link").input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#toasts")).to_contain_text("Copied")
    me.shot("members-added")
    # Roles: make the writer an admin.
    page.get_by_label("Role of writer", exact=True).select_option("admin")
    page.get_by_role("button", name="Save role of writer").click()
    expect(page.locator("#toasts")).to_contain_text("writer is now admin")
    me.check_clean()

    bob = browse()
    bob.page.goto(link)
    bob.page.get_by_label("New password", exact=True).fill("bobs-long-secret-1")
    bob.page.get_by_label("New password again").fill("bobs-long-secret-1")
    bob.page.get_by_role("button", name="Set password").click()
    expect(bob.page.locator("#toasts")).to_contain_text("Password set for bob")
    bob.login("bob", "bobs-long-secret-1")
    bob.page.get_by_role("link", name="API tokens").click()
    bob.page.get_by_label("Name").fill("laptop")
    bob.page.get_by_role("button", name="Create token").click()
    key = bob.page.get_by_label("New token").input_value()
    assert key.startswith("vol_") and ApiToken.objects.get(user__username="bob").prefix == key[:8]
    bob.shot("tokens-created")
    bob.page.reload()  # the key is gone, and no second token is made
    expect(bob.page.get_by_label("New token")).to_have_count(0)
    assert ApiToken.objects.count() == 1
    bob.page.get_by_role("button", name="Revoke laptop").click()
    confirm = bob.page.locator("dialog#confirm[open]")
    expect(confirm).to_contain_text("Revoke token laptop?")
    confirm.get_by_role("button", name="Revoke").click()
    expect(bob.page.locator("#toasts")).to_contain_text("Token laptop revoked")
    assert not ApiToken.objects.exists()
    bob.check_clean()
