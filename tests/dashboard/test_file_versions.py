"""One file's history: its versions across generations with who or which job wrote each, a text
diff between versions, download of one version, and restoring one version alone."""
import io

import pytest

from volumes.models import Job, Volume, VolumeCommit
from volumes.services import files
from volumes.services.file_history import file_versions

from .conftest import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def story(workspace, volume, cast):
    files.file_put(volume, "notes.txt", io.BytesIO(b"one\ntwo\n"), user=cast["owner"])      # gen 1
    files.file_put(volume, "other.txt", io.BytesIO(b"x"), user=cast["writer"])              # gen 2
    files.file_put(volume, "notes.txt", io.BytesIO(b"one\nTWO\nthree\n"), user=cast["writer"])  # gen 3
    job = Job.objects.create(workspace=workspace, user=cast["reader"], language="python", content="x", status="success")
    files.file_put(volume, "notes.txt", io.BytesIO(b"\x00binary"), user=cast["reader"])      # gen 4
    VolumeCommit.objects.filter(volume=volume, generation=4).update(job=job)  # as if a job wrote it
    volume.refresh_from_db()
    return {"job": job, "volume": volume}


def test_versions_list_each_change_with_its_writer(story, cast):
    versions = file_versions(story["volume"], "notes.txt")
    assert [v.generation for v in versions] == [4, 3, 1]
    assert [v.commit.user.username for v in versions] == ["reader", "writer", "owner"]
    assert versions[0].commit.job_id == story["job"].pk


def test_versions_of_old_manifests_without_generation_numbers_are_found_by_stepping_back(story, monkeypatch):
    real = files.manifest_of

    def without_gen(volume, generation=None):
        m = real(volume, generation)
        m.entries = {p: e._replace(gen=0) for p, e in m.entries.items()}
        return m

    monkeypatch.setattr(files, "manifest_of", without_gen)
    assert [v.generation for v in file_versions(story["volume"], "notes.txt")] == [4, 3, 1]


def test_the_versions_page_shows_writers_a_text_diff_and_no_diff_for_binary(as_user, workspace, story):
    client = as_user("member")
    page = client.get(url(workspace, story["volume"], "files/versions/?path=notes.txt")).content.decode()
    assert 'data-gen="4"' in page and 'data-gen="3"' in page and 'data-gen="1"' in page and 'data-gen="2"' not in page
    assert f"job {story['job'].pk}" in page and "writer" in page
    diff = client.get(url(workspace, story["volume"], "files/versions/?path=notes.txt&gen=3")).content.decode()
    assert '<span class="d-del">-two</span>' in diff and '<span class="d-add">+TWO</span>' in diff
    assert '<span class="d-add">+three</span>' in diff
    binary = client.get(url(workspace, story["volume"], "files/versions/?path=notes.txt&gen=4")).content.decode()
    assert "No text diff: binary" in binary
    first = client.get(url(workspace, story["volume"], "files/versions/?path=notes.txt&gen=1")).content.decode()
    assert "(created)" in first and '<span class="d-add">+one</span>' in first
    old = client.get(url(workspace, story["volume"], "files/download/?path=notes.txt&gen=3"))
    assert b"".join(old.streaming_content) == b"one\nTWO\nthree\n"
    assert client.get(url(workspace, story["volume"], "files/versions/?path=nope.txt")).status_code == 404


def test_restoring_one_version_changes_only_that_file(as_user, workspace, story, cast):
    volume = story["volume"]
    files.file_put(volume, "other.txt", io.BytesIO(b"newer other"), user=cast["owner"])  # gen 5
    done = as_user("writer").post(url(workspace, volume, "files/versions/restore/"), {"path": "notes.txt", "gen": "1"})
    assert done.status_code == 302
    volume = Volume.objects.get(pk=volume.pk)
    assert volume.generation == 6
    read = lambda p: b"".join(files.open_file(volume, files.entry_at(volume, p)))  # noqa: E731
    assert read("notes.txt") == b"one\ntwo\n" and read("other.txt") == b"newer other"
    assert VolumeCommit.objects.get(volume=volume, generation=6).message == "restore notes.txt from generation 1"
    assert [v.generation for v in file_versions(volume, "notes.txt")][:2] == [6, 4]


def test_a_read_only_user_cannot_restore_a_version(as_user, workspace, story, cast):
    from volumes import permissions

    permissions.set_share(story["volume"], cast["reader"], "read")
    refused = as_user("reader").post(url(workspace, story["volume"], "files/versions/restore/"),
                                     {"path": "notes.txt", "gen": "1"})
    assert refused.status_code == 403
    page = as_user("reader").get(url(workspace, story["volume"], "files/versions/?path=notes.txt")).content.decode()
    assert "Restore generation" not in page


def test_a_deleted_file_is_restored_alone_from_the_generation_that_deleted_it(as_user, workspace, story, cast):
    volume = story["volume"]
    files.file_delete(volume, "notes.txt", user=cast["owner"])  # gen 5; other.txt stays
    files.file_put(Volume.objects.get(pk=volume.pk), "later.txt", io.BytesIO(b"later"), user=cast["owner"])  # gen 6
    page = as_user("writer").get(url(workspace, volume, "history/5/")).content.decode()
    row = page[page.index('class="diff-del"'):]
    row = row[:row.index("</tr>")]
    assert "notes.txt" in row and 'name="gen" value="4"' in row and "Restore" in row
    from volumes import permissions

    permissions.set_share(volume, cast["reader"], "read")
    permissions.set_share(volume, cast["writer"], "write")
    read_only = as_user("reader").get(url(workspace, volume, "history/5/")).content.decode()
    assert "notes.txt" in read_only and "files/versions/restore/" not in read_only
    response = as_user("writer").post(url(workspace, volume, "files/versions/restore/"),
                                      {"path": "notes.txt", "gen": "4"})
    assert response.status_code == 302
    volume = Volume.objects.get(pk=volume.pk)
    assert volume.generation == 7
    assert sorted(e.path for e in files.list_folder(volume)) == ["later.txt", "notes.txt", "other.txt"]
    assert b"".join(files.open_file(volume, files.entry_at(volume, "notes.txt"))) == b"\x00binary"
