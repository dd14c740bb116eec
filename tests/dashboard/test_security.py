"""CSRF on every write, escaping of user-chosen names, and no dereferenced links."""
import pytest
from django.test import Client

from volumes.models import Volume
from volumes.services import files

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def strict(cast):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast["owner"])
    return client


def token(client, page) -> str:
    client.get(page)
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("rest, data", [
    ("assets/volumes/new/", {"name": "sneaky"}),
    ("volumes/training-data/delete/", {"confirm_name": "training-data"}),
    ("volumes/training-data/files/new-folder/", {"name": "x"}),
    ("volumes/training-data/shares/", {"who": "reader", "level": "read"}),
    ("jobs/run/", {"language": "python", "content": "def main(): pass", "args": "{}"}),
])
def test_every_write_without_a_csrf_token_is_refused(strict, workspace, volume, rest, data):
    response = strict.post(f"/w/{workspace.pk}/{rest}", data, **HTMX)
    assert response.status_code == 403
    assert Volume.objects.filter(name="training-data").exists() and not Volume.objects.filter(name="sneaky").exists()


def test_an_upload_without_the_header_is_refused_and_with_it_accepted(strict, workspace, volume):
    page = url(workspace, volume)
    upload_url = url(workspace, volume, "files/upload/")
    assert strict.post(upload_url, {"folder": "", "files": []}).status_code == 403
    response = strict.post(upload_url + "?path=a.txt", b"hi", content_type="application/octet-stream",
                           HTTP_X_CSRFTOKEN=token(strict, page))
    assert response.status_code == 200


def test_htmx_writes_with_the_token_header_pass(strict, workspace, volume):
    response = strict.post(url(workspace, rest="assets/volumes/new/"), {"name": "ok-data"},
                           HTTP_X_CSRFTOKEN=token(strict, url(workspace, rest="assets/volumes/")), **HTMX)
    assert response.status_code == 200 and Volume.objects.filter(name="ok-data").exists()


def test_every_page_puts_the_token_in_the_htmx_headers_of_the_body(as_user, workspace, volume):
    html = as_user("owner").get(url(workspace, volume)).content.decode()
    assert "<body hx-headers='{\"X-CSRFToken\": \"" in html


def test_a_file_named_like_markup_is_rendered_as_text_everywhere(upload, as_user, workspace, volume):
    upload(volume, {"safe.txt": b"x"})
    volume.refresh_from_db()
    files.file_move(volume, "safe.txt", XSS)
    volume.refresh_from_db()
    escaped = "&lt;img src=x onerror=alert(1)&gt;.txt"
    for page in [url(workspace, volume), url(workspace, volume, "history/"), url(workspace, volume, "history/2/")]:
        html = as_user("owner").get(page).content.decode()
        assert XSS not in html, page
    html = as_user("owner").get(url(workspace, volume)).content.decode()
    assert escaped in html
    for dialog in ["files/preview/", "files/move/", "files/delete/"]:
        response = as_user("owner").get(url(workspace, volume, f"{dialog}?path=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E.txt"),
                                        **HTMX)
        assert response.status_code == 200 and XSS not in response.content.decode() and escaped in response.content.decode()


def test_markup_in_search_and_error_messages_is_escaped(as_user, workspace):
    html = as_user("owner").get(url(workspace, rest="assets/volumes/?q=%3Cscript%3Ex%3C/script%3E")).content.decode()
    assert "<script>x</script>" not in html
    response = as_user("owner").post(url(workspace, rest="assets/volumes/new/"), {"name": "<b>x</b>"}, **HTMX)
    assert b"<b>x</b>" not in response.content


def test_a_symlink_is_never_followed_by_download_or_preview(as_user, workspace, volume, tmp_path):
    import os

    from ..engine.helpers import commit

    commit(volume, tmp_path / "c", lambda tree: os.symlink("/etc/passwd", tree / "pw"))
    for rest in ["files/download/?path=pw", "files/preview/?path=pw", "files/raw/?path=pw"]:
        response = as_user("owner").get(url(workspace, volume, rest))
        assert response.status_code == 400 and b"root:" not in response.content


def test_a_path_escaping_the_volume_is_refused(as_user, workspace, volume):
    for path in ["../../etc/passwd", "/etc/passwd", "a/../../b"]:
        response = as_user("owner").get(url(workspace, volume, f"files/download/?path={path}"))
        assert response.status_code in (400, 404)
