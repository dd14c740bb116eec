"""The volume page's health badge, and the repair of a damaged volume from the dashboard."""
import pytest

from volumes.models import Volume
from volumes.permissions import set_share

from ..services.test_health import damaged  # noqa: F401  (fixture)
from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def test_a_healthy_volume_shows_a_healthy_badge(as_user, workspace, upload, volume):
    upload(volume, {"a.txt": b"one"})
    page = as_user("reader").get(url(workspace, volume, "")).content.decode()
    assert "/health/" in page  # loaded after the page
    badge = as_user("reader").get(url(workspace, volume, "health/"), **HTMX).content.decode()
    assert "Healthy" in badge and "badge-ok" in badge


def test_a_damaged_volume_page_says_so_and_a_writer_repairs_it(as_user, workspace, damaged, cast):  # noqa: F811
    page = as_user("owner").get(url(workspace, damaged, ""))
    assert page.status_code == 200
    assert "damaged" in page.content.decode() and "health/repair/" in page.content.decode()
    badge = as_user("owner").get(url(workspace, damaged, "health/"), **HTMX).content.decode()
    assert "badge-err" in badge and "problems" in badge
    dialog = as_user("owner").get(url(workspace, damaged, "health/repair/"), **HTMX).content.decode()
    assert "report\\2024.csv" in dialog and "missing from storage" in dialog and ">Repair<" in dialog
    set_share(damaged, cast["reader"], "read")
    reader_dialog = as_user("reader").get(url(workspace, damaged, "health/repair/"), **HTMX).content.decode()
    assert ">Repair<" not in reader_dialog
    assert as_user("reader").post(url(workspace, damaged, "health/repair/"), **HTMX).status_code == 403
    before = damaged.generation
    done = as_user("owner").post(url(workspace, damaged, "health/repair/"), **HTMX)
    assert done.status_code == 200 and done.headers.get("HX-Redirect")
    assert Volume.objects.get(pk=damaged.pk).generation == before + 1
    page = as_user("owner").get(url(workspace, damaged, "")).content.decode()
    assert "is damaged" not in page and "also.txt" in page
