"""Every page renders for those allowed, 404 for non-members, 403 for members without the right."""
import pytest

from volumes.permissions import set_share
from volumes.services.jobs import job_submit

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(workspace, cast):
    return job_submit(workspace, cast["owner"], "python", "def main():\n    return 1\n", {}, enqueue=False)


def volume_pages(workspace, volume):
    return [url(workspace, volume), url(workspace, volume, "history/"), url(workspace, volume, "lease/")]


def workspace_pages(workspace):
    return [url(workspace, rest="assets/volumes/"), url(workspace, rest="assets/volumes/new/"),
            url(workspace, rest="jobs/"), url(workspace, rest="jobs/run/")]


def test_the_home_page_sends_members_to_their_workspace_and_others_to_login(client, as_user, workspace):
    assert client.get("/").status_code == 302 and "/login/" in client.get("/")["Location"]
    response = as_user("member").get("/")
    assert response.status_code == 302 and response["Location"] == url(workspace, rest="assets/volumes/")


def test_a_user_without_a_workspace_is_told_how_to_get_one(as_user):
    response = as_user("outsider").get("/")
    assert response.status_code == 200
    assert b"You are not in a workspace yet" in response.content


@pytest.mark.parametrize("who", ["admin", "owner", "writer", "reader", "member"])
def test_every_workspace_page_renders_for_members(as_user, workspace, volume, who):
    for page in workspace_pages(workspace) + volume_pages(workspace, volume):
        response = as_user(who).get(page)
        assert response.status_code == 200, (page, response.status_code)


def test_every_page_is_404_for_a_non_member(as_user, workspace, volume, job):
    pages = workspace_pages(workspace) + volume_pages(workspace, volume) + [
        url(workspace, rest="settings/storage/"), url(workspace, rest=f"jobs/{job.pk}/"),
        url(workspace, volume, "shares/"), url(workspace, volume, "delete/"),
        url(workspace, rest="assets/volumes/leases/"), url(workspace, rest="principals/"),
    ]
    for page in pages:
        assert as_user("outsider").get(page).status_code == 404, page


def test_an_unknown_workspace_or_volume_is_404_and_says_so(as_user, workspace):
    assert as_user("admin").get("/w/nope/assets/volumes/").status_code == 404
    response = as_user("admin").get(f"/w/{workspace.pk}/volumes/missing-volume/")
    assert response.status_code == 404 and b"not found" in response.content


def test_a_shared_volume_is_hidden_from_members_without_a_share_and_403_on_its_pages(as_user, workspace, volume, cast):
    set_share(volume, cast["reader"], "read")
    listing = as_user("member").get(url(workspace, rest="assets/volumes/"))
    assert f'href="/w/acme/volumes/{volume.name}/"'.encode() not in listing.content
    for page in volume_pages(workspace, volume):
        response = as_user("member").get(page)
        assert response.status_code == 403, page
        assert b"ask its owner" in response.content
    assert f'href="/w/acme/volumes/{volume.name}/"'.encode() in as_user("reader").get(
        url(workspace, rest="assets/volumes/")).content


def test_storage_settings_are_for_admins_only(as_user, workspace):
    assert as_user("admin").get(url(workspace, rest="settings/storage/")).status_code == 200
    response = as_user("member").get(url(workspace, rest="settings/storage/"))
    assert response.status_code == 403 and b"Only admins of this workspace" in response.content


def test_the_sidebar_offers_storage_settings_to_admins_only(as_user, workspace):
    assert b"settings/storage/" in as_user("admin").get(url(workspace, rest="assets/volumes/")).content
    assert b"settings/storage/" not in as_user("member").get(url(workspace, rest="assets/volumes/")).content


def test_the_workspace_switcher_lists_every_workspace_of_the_user(as_user, workspace, storage_root):
    from volumes.services.workspaces import workspace_ensure

    workspace_ensure("beta", name="Beta Labs", members=["member"], storage_url=f"file://{storage_root}")
    page = as_user("member").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "Switch workspace" in page and "Beta Labs" in page and "/w/beta/" in page
    assert "Switch workspace" not in as_user("owner").get(url(workspace, rest="assets/volumes/")).content.decode()


def test_a_job_page_is_for_its_user_and_admins(as_user, workspace, job):
    page = url(workspace, rest=f"jobs/{job.pk}/")
    assert as_user("owner").get(page).status_code == 200
    assert as_user("admin").get(page).status_code == 200
    assert as_user("member").get(page).status_code == 404


def test_an_htmx_request_gets_only_the_fragment(as_user, workspace, volume):
    full = as_user("owner").get(url(workspace, volume))
    fragment = as_user("owner").get(url(workspace, volume), **HTMX)
    assert b"<html" in full.content and b'id="file-browser"' in full.content
    assert b"<html" not in fragment.content and fragment.content.lstrip().startswith(b'<section id="file-browser"')
    rows = as_user("owner").get(url(workspace, rest="assets/volumes/"), **HTMX)
    assert rows.content.lstrip().startswith(b'<div id="volume-table"')


def test_a_history_restore_request_from_htmx_gets_the_whole_page(as_user, workspace, volume):
    response = as_user("owner").get(url(workspace, volume), HTTP_HX_REQUEST="true",
                                    HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in response.content


def test_an_htmx_request_after_logout_is_redirected_to_login_by_htmx(client, workspace):
    response = client.get(url(workspace, rest="assets/volumes/"), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"].startswith("/login/")


def test_errors_of_htmx_requests_become_a_toast_without_a_swap(as_user, workspace, volume, cast):
    set_share(volume, cast["reader"], "read")
    response = as_user("member").get(url(workspace, volume), **HTMX)
    assert response.status_code == 403
    assert response["HX-Reswap"] == "none" and "ask its owner" in response["HX-Trigger"]


def test_login_and_logout(client, cast, workspace):
    cast["owner"].set_password("pw-owner-1")
    cast["owner"].save()
    bad = client.post("/login/", {"username": "owner", "password": "nope"})
    assert b"did not match" in bad.content
    good = client.post("/login/", {"username": "owner", "password": "pw-owner-1"})
    assert good.status_code == 302
    assert client.get(url(workspace, rest="assets/volumes/")).status_code == 200
    client.post("/logout/")
    assert client.get(url(workspace, rest="assets/volumes/")).status_code == 302
