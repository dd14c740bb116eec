"""In a real browser: duplicate a volume and open the copy, set a size limit and see the bar warn, trash a
volume and restore it, delete one for good in the dashboard's own dialog. At a laptop's and a phone's width."""
from __future__ import annotations

import io

import pytest
from playwright.sync_api import expect

from volumes.models import Volume
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner(cast, workspace):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume = volume_create(workspace, "research-data", owner=cast["owner"])
    files.file_put(volume, "raw/samples.csv", io.BytesIO(b"id,value\n" + b"1,2\n" * 200), user=cast["owner"])
    files.file_put(volume, "notes.txt", io.BytesIO(b"second generation only\n"), user=cast["owner"])
    return cast["owner"]


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def open_dialog(page, trigger):
    trigger.click()
    dialog = page.locator("dialog#modal[open]")
    expect(dialog).to_be_visible()
    return dialog


@pytest.mark.parametrize("width", [1280, 390])
def test_duplicate_quota_and_trash_from_the_dashboard(browse, workspace, owner, width):
    me = browse()
    page = me.page
    page.set_viewport_size({"width": width, "height": 860 if width == 1280 else 844})
    me.login("owner", "pw-owner-123")
    ws = workspace.pk

    # Duplicate generation 1 (before notes.txt) and open the copy: its files and the note of its origin.
    page.goto(f"/w/{ws}/volumes/research-data/")
    dialog = open_dialog(page, page.locator("[data-duplicate]"))
    expect(dialog.get_by_label("Name")).to_have_value("research-data-copy")
    dialog.get_by_label("Name").fill("research-v1")
    dialog.get_by_label("From generation").select_option("1")
    me.shot(f"dup-{width}-1-dialog")
    dialog.get_by_role("button", name="Duplicate").click()
    page.wait_for_url(f"**/w/{ws}/volumes/research-v1/")
    expect(page.locator("#toasts")).to_contain_text("Volume research-v1 is a copy of research-data generation 1")
    expect(page.get_by_role("link", name="raw", exact=True)).to_be_visible()
    expect(page.get_by_text("notes.txt")).to_have_count(0)
    me.shot(f"dup-{width}-2-copy")
    no_sideways_scroll(page)
    page.get_by_role("link", name="History").click()
    expect(page.locator("table.history")).to_contain_text("duplicated from research-data generation 1 by owner")
    me.shot(f"dup-{width}-3-copy-history")

    # A size limit: a bad one says why; 1 kB for ~1 kB stored shows an amber bar and the 80 % warning.
    page.goto(f"/w/{ws}/volumes/research-data/")
    dialog = open_dialog(page, page.locator("[data-quota]"))
    dialog.get_by_label("Size limit").fill("ten gigs")
    dialog.get_by_role("button", name="Save limit").click()
    expect(dialog.locator(".field-error")).to_contain_text("write it like 10 GB")
    me.shot(f"quota-{width}-1-error")
    stored = Volume.objects.get(name="research-data").size_bytes
    dialog.get_by_label("Size limit").fill(f"{stored * 100 // 90} B")
    dialog.get_by_role("button", name="Save limit").click()
    page.wait_for_url(f"**/w/{ws}/volumes/research-data/")
    meter = page.get_by_role("meter")
    expect(meter).to_have_attribute("aria-valuenow", "90")
    expect(page.locator(".usage-meter.usage-warning")).to_contain_text("Near its limit")
    me.shot(f"quota-{width}-2-bar")
    no_sideways_scroll(page)
    page.goto(f"/w/{ws}/assets/volumes/")
    expect(page.locator(".usage-chip.usage-warning")).to_contain_text("90%")
    me.shot(f"quota-{width}-3-table")
    no_sideways_scroll(page)

    # Trash the copy and restore it from the Trash page; then delete it for good in our own dialog.
    page.goto(f"/w/{ws}/volumes/research-v1/")
    dialog = open_dialog(page, page.get_by_role("link", name="Delete", exact=True))
    dialog.get_by_label("Type").fill("research-v1")
    dialog.get_by_role("button", name="Move to trash").click()
    page.wait_for_url(f"**/w/{ws}/assets/volumes/")
    page.goto(f"/w/{ws}/assets/trash/")
    expect(page.locator("tr[data-trashed='research-v1']")).to_be_visible()
    me.shot(f"trash-{width}-1-list")
    no_sideways_scroll(page)
    page.locator("[data-restore='research-v1']").click()
    page.wait_for_url(f"**/w/{ws}/volumes/research-v1/")
    expect(page.locator("#toasts")).to_contain_text("Volume research-v1 was restored")
    expect(page.get_by_role("link", name="raw", exact=True)).to_be_visible()
    dialog = open_dialog(page, page.get_by_role("link", name="Delete", exact=True))
    dialog.get_by_label("Type").fill("research-v1")
    dialog.get_by_role("button", name="Move to trash").click()
    page.wait_for_url(f"**/w/{ws}/assets/volumes/")
    page.goto(f"/w/{ws}/assets/trash/")
    dialog = open_dialog(page, page.locator("[data-purge='research-v1']"))
    expect(dialog).to_contain_text("cannot be undone")
    me.shot(f"trash-{width}-2-purge-dialog")
    dialog.get_by_role("button", name="Delete for good").click()
    expect(page.locator("#toasts")).to_contain_text("Volume research-v1 was deleted for good")
    expect(page.locator("tr[data-trashed='research-v1']")).to_have_count(0)
    assert not Volume.all_objects.filter(name="research-v1").exists()
    me.check_clean()
