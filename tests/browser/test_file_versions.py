"""A file's versions in the browser: open them from the file list, see a diff, restore one."""
from __future__ import annotations

import io

import pytest
from playwright.sync_api import expect

from volumes.models import Volume
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_file_version_is_compared_and_restored(browse, workspace, cast):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume = volume_create(workspace, "configs", owner=cast["owner"])
    files.file_put(volume, "app/settings.ini", io.BytesIO(b"debug=false\nport=80\n"), user=cast["owner"])
    files.file_put(volume, "app/settings.ini", io.BytesIO(b"debug=true\nport=8080\n"), user=cast["writer"])
    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/configs/?path=app")
    page.get_by_label("Versions of settings.ini").click()
    rows = page.locator("#version-rows tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("writer")
    page.get_by_role("link", name="Changes in generation 2").click()
    expect(page.locator(".text-diff")).to_contain_text("+debug=true")
    expect(page.locator(".text-diff")).to_contain_text("-port=80")
    me.shot("file-versions")
    page.get_by_role("button", name="Restore generation 1").click()
    expect(page.locator("#toasts")).to_contain_text("Restored app/settings.ini as it was in generation 1")
    expect(rows).to_have_count(3)
    volume = Volume.objects.get(pk=volume.pk)
    assert b"".join(files.open_file(volume, files.entry_at(volume, "app/settings.ini"))) == b"debug=false\nport=80\n"
    me.check_clean()


@pytest.mark.parametrize("width", [1280, 390])
def test_a_deleted_file_is_restored_from_the_generation_that_deleted_it(browse, workspace, cast, width):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume = volume_create(workspace, "configs", owner=cast["owner"])
    files.file_put(volume, "app/settings.ini", io.BytesIO(b"port=80\n"), user=cast["owner"])
    files.file_put(Volume.objects.get(pk=volume.pk), "app/keep.txt", io.BytesIO(b"keep"), user=cast["owner"])
    files.file_delete(Volume.objects.get(pk=volume.pk), "app/settings.ini", user=cast["writer"])
    me = browse()
    page = me.page
    page.set_viewport_size({"width": width, "height": 900})
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/configs/history/3/")
    button = page.get_by_role("button", name="Restore app/settings.ini as it was in generation 2")
    expect(button).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling of the page
    me.shot(f"diff-restore-deleted-{width}")
    button.click()
    expect(page.locator("#toasts")).to_contain_text("Restored app/settings.ini as it was in generation 2")
    volume = Volume.objects.get(pk=volume.pk)
    assert volume.generation == 4
    assert b"".join(files.open_file(volume, files.entry_at(volume, "app/settings.ini"))) == b"port=80\n"
    me.check_clean()
