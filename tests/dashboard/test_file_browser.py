"""The file browser: listing, upload, preview, download, folders, move, delete, leases, pagination."""
import os
import re

import pytest

from volumes.engine import leases
from volumes.models import Volume, VolumeCommit
from volumes.services import files

from ..engine.helpers import commit
from .conftest import HTMX, url

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005"
    "0001ff5a8b6a0d0000000049454e44ae426082"
)


def names(html: bytes) -> list[str]:
    """Entry names in the order the browser lists them."""
    return [re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(r'<td class="name-cell">(.*?)</td>', html.decode(), re.S)]


def test_an_upload_of_several_files_commits_one_generation_and_lists_them(upload, as_user, workspace, volume, cast):
    response = upload(volume, {"a.txt": b"alpha", "b.csv": b"x,y\n1,2\n"})
    assert response.status_code == 200, response.content
    assert response.json()["generation"] == 1 and "Uploaded 2 files" in response.json()["message"]
    volume.refresh_from_db()
    assert (volume.generation, volume.file_count, volume.size_bytes) == (1, 2, 13)
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert "a.txt" in page and "b.csv" in page and "5\xa0bytes" in page
    assert VolumeCommit.objects.get(volume=volume, generation=1).user == cast["owner"]


def test_an_upload_into_a_folder_and_a_raw_body_upload(upload, as_user, workspace, volume):
    files.folder_create(volume, "docs")
    upload(volume, {"readme.md": b"# hi"}, folder="docs")
    raw = as_user("owner").post(url(workspace, volume, "files/upload/?path=docs/raw.bin"), data=b"\x00\x01",
                                content_type="application/octet-stream")
    assert raw.status_code == 200
    volume.refresh_from_db()
    assert [e.path for e in files.list_folder(volume, "docs")] == ["docs/raw.bin", "docs/readme.md"]


def test_folders_come_first_with_sizes_times_and_who_wrote_each_file(upload, as_user, workspace, volume, tmp_path):
    upload(volume, {"zeta.txt": b"z"})

    def mutate(tree):
        (tree / "alpha-dir").mkdir()
        (tree / "beta.txt").write_text("written by a job")
        os.symlink("/etc/passwd", tree / "outside")

    commit(volume, tmp_path / "cache", mutate)
    page = as_user("member").get(url(workspace, volume))
    assert names(page.content)[0] == "alpha-dir"
    html = page.content.decode()
    assert "outside" in html and "/etc/passwd" in html and "link" in html  # symlink with its target
    assert "owner" in html and "gen 1" in html and "gen 2" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", html)


def test_a_big_folder_is_paginated(as_user, workspace, volume, tmp_path):
    def mutate(tree):
        for i in range(450):
            (tree / f"f{i:04}.txt").write_text("x")

    commit(volume, tmp_path / "cache", mutate)
    first = as_user("owner").get(url(workspace, volume), **HTMX).content
    third = as_user("owner").get(url(workspace, volume, "?page=3"), **HTMX).content
    assert len(names(first)) == 200 and names(first)[0] == "f0000.txt"
    assert len(names(third)) == 50 and b"401\xe2\x80\x93450 of 450 entries" in third


def test_browsing_a_folder_shows_breadcrumbs_and_a_missing_folder_is_404(upload, as_user, workspace, volume):
    upload(volume, {"x.txt": b"x"}, folder="a/b")
    page = as_user("owner").get(url(workspace, volume, "?path=a/b")).content.decode()
    assert "?path=a" in page and 'aria-current="page">b<' in page and "x.txt" in page
    assert as_user("owner").get(url(workspace, volume, "?path=nope")).status_code == 404


def test_text_preview_is_capped_and_images_preview_inline(upload, as_user, workspace, volume):
    upload(volume, {"big.txt": b"line\n" * 60_000, "pic.png": PNG, "data.bin": b"\x00\x01\x02binary"})
    text = as_user("reader").get(url(workspace, volume, "files/preview/?path=big.txt"), **HTMX).content.decode()
    assert "Showing the first 256.0\xa0KB" in text and "line\nline" in text
    image = as_user("reader").get(url(workspace, volume, "files/preview/?path=pic.png"), **HTMX).content.decode()
    assert "files/raw/?path=pic.png" in image
    raw = as_user("reader").get(url(workspace, volume, "files/raw/?path=pic.png"))
    assert raw["Content-Type"] == "image/png" and b"".join(raw.streaming_content) == PNG
    assert "sandbox" in raw["Content-Security-Policy"]
    binary = as_user("reader").get(url(workspace, volume, "files/preview/?path=data.bin"), **HTMX).content
    assert b"binary file" in binary
    assert as_user("reader").get(url(workspace, volume, "files/raw/?path=big.txt")).status_code == 400


def test_download_streams_the_file_as_an_attachment(upload, as_user, workspace, volume):
    upload(volume, {"report final.csv": b"a,b\n"})
    response = as_user("reader").get(url(workspace, volume, "files/download/?path=report%20final.csv"))
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"a,b\n"
    assert response["Content-Disposition"].startswith("attachment;") and "report" in response["Content-Disposition"]
    assert response["Content-Length"] == "4"


def test_new_folder_move_and_delete_commit_generations_and_refresh_the_browser(upload, as_user, workspace, volume):
    upload(volume, {"a.txt": b"a"})
    client = as_user("writer")
    made = client.post(url(workspace, volume, "files/new-folder/"), {"folder": "", "name": "reports/2024"}, **HTMX)
    assert made.status_code == 200 and "files-refresh" in made["HX-Trigger"] and "closeModal" in made["HX-Trigger"]
    moved = client.post(url(workspace, volume, "files/move/"), {"src": "a.txt", "dst": "reports/2024/b.txt",
                                                               "folder": ""}, **HTMX)
    assert moved.status_code == 200 and "Moved a.txt to reports/2024/b.txt" in moved["HX-Trigger"]
    confirm = client.get(url(workspace, volume, "files/delete/?path=reports"), **HTMX).content.decode()
    assert "Delete the folder" in confirm and "2 entries inside it" in confirm
    deleted = client.post(url(workspace, volume, "files/delete/"), {"path": "reports"}, **HTMX)
    assert deleted.status_code == 200
    volume.refresh_from_db()
    assert volume.generation == 4 and files.list_folder(volume) == []


def test_a_move_onto_an_existing_path_says_what_to_do(upload, as_user, workspace, volume):
    upload(volume, {"a.txt": b"a", "b.txt": b"b"})
    response = as_user("owner").post(url(workspace, volume, "files/move/"), {"src": "a.txt", "dst": "b.txt"}, **HTMX)
    assert response.status_code == 422 and b"already exists; pick another name" in response.content


def test_readers_see_no_write_actions_and_cannot_write(upload, as_user, workspace, volume, cast):
    from volumes.permissions import set_share

    upload(volume, {"a.txt": b"a"})
    set_share(volume, cast["reader"], "read")
    page = as_user("reader").get(url(workspace, volume)).content.decode()
    assert "read-only access" in page and "data-upload-input" not in page and "files/move/" not in page
    assert upload(volume, {"b.txt": b"b"}, user="reader").status_code == 403
    assert as_user("reader").post(url(workspace, volume, "files/delete/"), {"path": "a.txt"}).status_code == 403


def test_while_leased_the_browser_says_so_and_writes_are_refused(upload, as_user, workspace, volume):
    leases.try_acquire(volume.pk, "worker-x job 1")
    page = as_user("owner").get(url(workspace, volume)).content.decode()
    assert "In use by worker-x job 1" in page and 'data-leased="1"' in page and 'aria-disabled="true"' in page
    response = upload(volume, {"a.txt": b"a"})
    assert response.status_code == 409 and "in use by worker-x job 1" in response.json()["detail"]
    banner = as_user("owner").get(url(workspace, volume, "lease/"), **HTMX).content.decode()
    assert "hx-trigger=\"every 2500ms" in banner and "In use by worker-x job 1" in banner


def test_a_file_over_the_edition_limit_is_refused_with_the_limit(upload, workspace, volume, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 10}
    response = upload(volume, {"big.bin": b"x" * 11})
    assert response.status_code == 413 and "over the limit of 10 bytes" in response.json()["detail"]
    assert Volume.objects.get(pk=volume.pk).generation == 0
