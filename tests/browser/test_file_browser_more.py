"""The file browser in a browser: filter as you type (focus kept), sort, select and delete several
entries at once, and edit a text file in place."""
from __future__ import annotations

import io

import pytest
from playwright.sync_api import expect

from volumes.models import Volume
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_filter_sort_select_delete_and_edit(browse, workspace, cast):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume = volume_create(workspace, "notes", owner=cast["owner"])
    files.file_put_many(volume, [(f"n{i}.txt", io.BytesIO(b"x" * (i + 1))) for i in range(5)] +
                        [("todo.md", io.BytesIO(b"- milk\n"))], user=cast["owner"])
    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/notes/")
    browser = page.locator("#file-browser")
    box = page.locator("#file-filter")
    box.press_sequentially("n3")
    expect(browser.locator("td.name-cell")).to_have_count(1)
    expect(box).to_be_focused()
    box.fill("")
    box.press("Enter")
    expect(browser.locator("td.name-cell")).to_have_count(6)
    browser.get_by_role("link", name="Size").click()
    browser.get_by_role("link", name="Size ↑").click()
    expect(browser.locator("td.name-cell").first).to_contain_text("todo.md")  # 7 bytes, the largest

    page.get_by_label("Select n0.txt").check()
    page.get_by_label("Select n1.txt").check()
    expect(page.locator("[data-bulk-count]")).to_have_text("2 selected")
    me.shot("file-browser-selection")
    # A careless click asks first, in the page's own dialog: Cancel deletes nothing.
    page.locator("[data-bulk-bar]").get_by_role("button", name="Delete").click()
    confirm = page.locator("dialog#confirm[open]")
    expect(confirm).to_contain_text("Delete 2 selected entries?")
    me.shot("file-browser-confirm-bulk-delete")
    confirm.get_by_role("button", name="Cancel").click()
    expect(page.locator("dialog#confirm[open]")).to_have_count(0)
    expect(browser.locator("td.name-cell")).to_have_count(6)
    page.locator("[data-bulk-bar]").get_by_role("button", name="Delete").click()
    page.locator("dialog#confirm[open]").get_by_role("button", name="Delete").click()
    expect(page.locator("#toasts")).to_contain_text("Deleted 2 entries")
    expect(browser.locator("td.name-cell")).to_have_count(4)
    expect(page.locator("[data-bulk-bar]")).to_be_hidden()

    page.get_by_label("Edit todo.md").click()
    area = page.locator("dialog#modal[open] textarea")
    expect(area).to_have_value("- milk\n")
    area.fill("- milk\n- bread\n")
    page.locator("dialog#modal[open]").get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("Saved todo.md")
    expect(page.locator("dialog#modal[open]")).to_have_count(0)
    volume = Volume.objects.get(pk=volume.pk)
    assert b"".join(files.open_file(volume, files.entry_at(volume, "todo.md"))) == b"- milk\n- bread\n"
    me.check_clean()


def test_a_file_over_the_limit_is_refused_before_uploading_in_sizes_a_person_reads(browse, workspace, cast, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 2 * 1024 * 1024}
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume_create(workspace, "notes", owner=cast["owner"])
    me = browse()
    me.login("owner", "pw-owner-123")
    me.page.goto(f"/w/{workspace.pk}/volumes/notes/")
    me.page.set_input_files("input[data-upload-input]", files=[
        {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * (3 * 1024 * 1024)}])
    expect(me.page.locator("#toasts")).to_contain_text("big.bin is 3.0 MB, over the limit of 2.0 MB per file")
    me.shot("upload-over-the-limit")
    assert Volume.objects.get(name="notes").generation == 0
