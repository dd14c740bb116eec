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
