"""Folders in and out in the browser: the folder picker and a dropped folder each land as one
generation with their tree (through the tar the page builds); the Zip button downloads a zip."""
from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import expect

from volumes.models import Volume
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_folders_upload_with_their_tree_and_download_as_zip(browse, workspace, cast, tmp_path):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume_create(workspace, "photos", owner=cast["owner"])
    album = tmp_path / "album"
    (album / "2024" / "summer").mkdir(parents=True)
    for i in range(60):  # more than one multipart batch: still one generation
        (album / "2024" / f"img-{i:02}.jpg").write_bytes(b"j" * (i + 1))
    (album / "2024" / "summer" / ("beach-" + "x" * 120 + ".jpg")).write_bytes(b"long name")
    (album / "index.txt").write_text("album\n")

    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/photos/")
    page.set_input_files("input[data-folder-input]", str(album))
    expect(page.locator("[data-upload-text]")).to_contain_text("Uploaded 62 files", timeout=20_000)
    volume = Volume.objects.get(name="photos")
    paths = {e.path for e in files.manifest_of(volume).entries.values() if e.type == "file"}
    assert volume.generation == 1 and len(paths) == 62
    assert "album/index.txt" in paths and f"album/2024/summer/beach-{'x' * 120}.jpg" in paths
    expect(page.locator("#file-browser").get_by_role("link", name="album", exact=True)).to_be_visible()

    # A dropped folder (the FileSystemEntry interface a drop hands over), into the open folder.
    page.get_by_role("link", name="album", exact=True).click()
    expect(page.locator("#file-browser")).to_have_attribute("data-folder", "album")
    page.evaluate("""() => {
        const file = (name, text) => ({isFile: true, isDirectory: false, fullPath: "/drop/" + name,
            file: (ok) => ok(new File([text], name.split("/").pop()))});
        const dir = {isFile: false, isDirectory: true, fullPath: "/drop", createReader: () => {
            let given = false;
            return {readEntries: (ok) => {
                const batch = given ? [] : [file("a.txt", "A"), file("sub/b.txt", "B")];
                given = true;
                setTimeout(() => ok(batch), 0);  // answers later, as the real one does
            }};
        }};
        window.volumesUploadEntries([dir]);
    }""")
    expect(page.locator("[data-upload-text]")).to_contain_text("Uploaded 2 files")
    volume.refresh_from_db()
    assert volume.generation == 2
    assert files.entry_at(volume, "album/drop/sub/b.txt").size == 1

    # Download the open folder as a zip.
    with page.expect_download() as info:
        page.get_by_role("link", name="Zip", exact=True).click()
    data = open(info.value.path(), "rb").read()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "index.txt" in names and "drop/sub/b.txt" in names and "2024/img-00.jpg" in names
    me.shot("folder-uploaded")
    me.check_clean()
