"""The file browser's selection (bulk delete, move, download), sorting, filtering within a
folder, and editing a small text file in place."""
import io
import re
import zipfile

import pytest

from volumes.models import Volume
from volumes.services import files

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def filled(volume, cast):
    files.file_put_many(volume, [("docs/a.txt", io.BytesIO(b"aaaa")), ("docs/big.csv", io.BytesIO(b"x" * 5000)),
                                 ("docs/sub/c.md", io.BytesIO(b"# c")), ("zeta.txt", io.BytesIO(b"z")),
                                 ("Alpha.log", io.BytesIO(b"al"))], user=cast["owner"])
    return Volume.objects.get(pk=volume.pk)


def names(content: bytes) -> list[str]:
    return [re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(r'<td class="name-cell">(.*?)</td>', content.decode(), re.S)]


def test_bulk_delete_is_one_generation(as_user, workspace, filled):
    before = filled.generation
    response = as_user("owner").post(url(workspace, filled, "files/bulk/"),
                                     {"sel": ["docs/a.txt", "docs/sub", "docs/sub/c.md", "zeta.txt"], "action": "delete",
                                      "folder": "docs"}, **HTMX)
    assert response.status_code == 200 and "Deleted 4 entries" in response["HX-Trigger"]
    volume = Volume.objects.get(pk=filled.pk)
    assert volume.generation == before + 1
    assert sorted(files.manifest_of(volume).entries) == ["Alpha.log", "docs", "docs/big.csv"]


def test_bulk_move_into_a_folder_is_one_generation(as_user, workspace, filled):
    response = as_user("owner").post(url(workspace, filled, "files/bulk/"),
                                     {"sel": ["zeta.txt", "Alpha.log"], "action": "move", "dest": "archive/old"}, **HTMX)
    assert response.status_code == 200
    volume = Volume.objects.get(pk=filled.pk)
    assert volume.generation == filled.generation + 1
    assert {"archive/old/zeta.txt", "archive/old/Alpha.log"} <= set(files.manifest_of(volume).entries)
    clash = as_user("owner").post(url(workspace, filled, "files/bulk/"),
                                  {"sel": ["archive/old/zeta.txt"], "action": "move", "dest": "archive/old"}, **HTMX)
    assert clash.status_code == 200  # already there: nothing to do
    into_itself = as_user("owner").post(url(workspace, filled, "files/bulk/"),
                                        {"sel": ["docs"], "action": "move", "dest": "docs/sub"}, **HTMX)
    assert into_itself.status_code == 400 and "into itself" in into_itself["HX-Trigger"]


def test_bulk_download_zips_the_selection(as_user, workspace, filled, cast):
    from volumes import permissions

    permissions.set_share(filled, cast["reader"], "read")
    response = as_user("reader").get(url(workspace, filled, "files/bulk/?folder=docs&sel=docs/a.txt&sel=docs/sub"))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["a.txt", "sub/", "sub/c.md"]
    assert as_user("reader").post(url(workspace, filled, "files/bulk/"), {"sel": ["zeta.txt"]}).status_code == 403


def test_sort_by_name_size_and_date_with_folders_first(as_user, workspace, filled):
    client = as_user("member")
    assert names(client.get(url(workspace, filled)).content) == ["docs", "Alpha.log", "zeta.txt"]
    assert names(client.get(url(workspace, filled, "?sort=-name")).content) == ["docs", "zeta.txt", "Alpha.log"]
    assert names(client.get(url(workspace, filled, "?path=docs&sort=-size")).content) == ["sub", "big.csv", "a.txt"]
    files.file_put(filled, "Alpha.log", io.BytesIO(b"newer"))
    assert names(client.get(url(workspace, filled, "?sort=-date")).content)[:2] == ["docs", "Alpha.log"]
    page = client.get(url(workspace, filled, "?sort=size")).content.decode()
    assert 'aria-sort="ascending"' in page and "sort=-size" in page


def test_filter_within_a_folder(as_user, workspace, filled):
    client = as_user("member")
    assert names(client.get(url(workspace, filled, "?path=docs&q=BIG")).content) == ["big.csv"]
    assert names(client.get(url(workspace, filled, "?q=a")).content) == ["Alpha.log", "zeta.txt"]  # not docs/a.txt
    assert b"Nothing here matches" in client.get(url(workspace, filled, "?q=nothing")).content


def test_a_small_text_file_is_edited_in_place_as_a_generation(as_user, workspace, filled):
    client = as_user("writer")
    dialog = client.get(url(workspace, filled, "files/edit/?path=docs/sub/c.md"), **HTMX).content.decode()
    assert "# c</textarea>" in dialog
    digest = re.search(r'name="hash" value="([0-9a-f]+)"', dialog).group(1)
    saved = client.post(url(workspace, filled, "files/edit/"),
                        {"path": "docs/sub/c.md", "hash": digest, "text": "# c\r\nmore\r\n"}, **HTMX)
    assert saved.status_code == 200 and "Saved docs/sub/c.md" in saved["HX-Trigger"]
    volume = Volume.objects.get(pk=filled.pk)
    assert volume.generation == filled.generation + 1
    assert b"".join(files.open_file(volume, files.entry_at(volume, "docs/sub/c.md"))) == b"# c\nmore\n"
    # A save over a newer version is refused, with the text kept in the dialog.
    stale = client.post(url(workspace, filled, "files/edit/"),
                        {"path": "docs/sub/c.md", "hash": digest, "text": "lost?"}, **HTMX)
    assert stale.status_code == 409 and b"changed since you opened it" in stale.content and b"lost?" in stale.content
    big = client.get(url(workspace, filled, "files/edit/?path=docs/big.csv"), **HTMX)
    assert big.status_code == 200  # 5 KB: editable
    files.file_put(volume, "bin.dat", io.BytesIO(b"\x00\x01"))
    assert client.get(url(workspace, filled, "files/edit/?path=bin.dat"), **HTMX).status_code == 400


def test_a_reader_cannot_edit(as_user, workspace, filled, cast):
    from volumes import permissions

    permissions.set_share(filled, cast["reader"], "read")
    assert as_user("reader").get(url(workspace, filled, "files/edit/?path=zeta.txt")).status_code == 403
    assert b'aria-label="Edit zeta.txt"' not in as_user("reader").get(url(workspace, filled)).content
    assert b'aria-label="Edit zeta.txt"' in as_user("owner").get(url(workspace, filled)).content
