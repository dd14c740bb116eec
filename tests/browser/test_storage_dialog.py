"""The storage dialog shows only the fields of the chosen kind, and the test result is in view."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_dashboard_flow import open_dialog

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("width", [390, 1280])
def test_the_storage_dialog_shows_one_kind_and_the_test_result_in_view(browse, workspace, cast, width):
    cast["admin"].set_password("pw-admin-123")
    cast["admin"].save()
    me = browse()
    page = me.page
    page.set_viewport_size({"width": width, "height": 700})
    me.login("admin", "pw-admin-123")
    page.goto(f"/w/{workspace.pk}/settings/storage/")
    dialog = open_dialog(page, page.get_by_role("link", name="Add storage"))
    # At once (Kind not touched): the filesystem's fields only.
    expect(dialog.get_by_label("Folder", exact=True)).to_be_visible()
    for label in ("Bucket", "Container", "Connection string", "Project", "Access key id"):
        expect(dialog.get_by_label(label, exact=True)).to_be_hidden()
    visible = dialog.locator(".config .field:visible")
    assert visible.count() == 2, visible.all_inner_texts()  # folder and key prefix
    dialog.get_by_label("Kind").select_option("s3")
    expect(dialog.get_by_label("Bucket")).to_be_visible()
    expect(dialog.get_by_label("Folder", exact=True)).to_be_hidden()
    dialog.get_by_label("Name", exact=True).fill("bucket")
    dialog.get_by_role("button", name="Test connection").click()
    result = dialog.locator("#storage-form-test")
    expect(result).to_contain_text("Fix the form first")
    expect(result).to_be_in_viewport()
    me.shot(f"storage-dialog-test-{width}")

    # Editing a saved storage opens with its own kind's fields.
    page.keyboard.press("Escape")
    dialog = open_dialog(page, page.get_by_role("link", name="Edit").first)
    expect(dialog.get_by_label("Folder", exact=True)).to_be_visible()
    expect(dialog.get_by_label("Bucket", exact=True)).to_be_hidden()
    me.check_clean()
