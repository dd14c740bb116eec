"""Assets > Volumes: the table, search and sort, live lease badges, and creating a volume."""
import re

import pytest

from volumes.engine import leases
from volumes.models import Volume
from volumes.services.volumes import volume_create

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def names_in(html: bytes) -> list[str]:
    return re.findall(r'href="/w/acme/volumes/([^/"]+)/"', html.decode())


def test_the_table_shows_name_owner_size_files_last_used_and_status(as_user, workspace, volume):
    Volume.objects.filter(pk=volume.pk).update(size_bytes=5 * 1024 * 1024, file_count=12)
    page = as_user("member").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "training-data" in page and "owner" in page
    assert "5.0\xa0MB" in page and ">12<" in page and "never" in page and "Idle" in page


def test_search_filters_and_sort_orders_the_table(as_user, workspace, cast):
    for name, size in [("alpha", 3), ("beta", 1), ("gamma-logs", 2)]:
        v = volume_create(workspace, name, owner=cast["owner"])
        Volume.objects.filter(pk=v.pk).update(size_bytes=size)
    client = as_user("member")
    assert names_in(client.get(url(workspace, rest="assets/volumes/?q=ga"), **HTMX).content) == ["gamma-logs"]
    assert names_in(client.get(url(workspace, rest="assets/volumes/?sort=size"), **HTMX).content) == [
        "beta", "gamma-logs", "alpha"]
    assert names_in(client.get(url(workspace, rest="assets/volumes/?sort=-name"), **HTMX).content) == [
        "gamma-logs", "beta", "alpha"]
    assert b"No volume matches" in client.get(url(workspace, rest="assets/volumes/?q=zzz"), **HTMX).content


def test_an_empty_workspace_explains_how_volumes_come_to_be(as_user, workspace):
    page = as_user("member").get(url(workspace, rest="assets/volumes/")).content
    assert b"No volumes yet" in page and b"# volume: training-data data" in page


def test_the_lease_badges_show_who_holds_a_volume_and_since_when(as_user, workspace, volume):
    page = url(workspace, rest="assets/volumes/leases/")
    assert b"Idle" in as_user("member").get(page, **HTMX).content
    leases.try_acquire(volume.pk, "worker-x job 1")
    badge = as_user("member").get(page, **HTMX).content.decode()
    assert f'id="lease-{volume.pk}"' in badge and 'hx-swap-oob="true"' in badge
    assert "In use · worker-x job 1" in badge and "since" in badge


def test_a_new_volume_is_created_and_the_browser_goes_to_it(as_user, workspace, cast):
    response = as_user("member").post(url(workspace, rest="assets/volumes/new/"), {"name": "fresh-data"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == url(workspace, rest="volumes/fresh-data/")
    assert Volume.objects.get(name="fresh-data").owner == cast["member"]


@pytest.mark.parametrize("name, message", [
    ("a", "must be 2 to 255 characters"),
    ("-bad-", "must start and end"),
    ("bad name", "use only ASCII letters"),
])
def test_an_invalid_name_is_refused_with_the_annotation_rules(as_user, workspace, name, message):
    response = as_user("member").post(url(workspace, rest="assets/volumes/new/"), {"name": name}, **HTMX)
    assert response.status_code == 422 and message in response.content.decode()
    assert not Volume.objects.exists()


def test_a_name_taken_in_another_case_is_refused(as_user, workspace, volume):
    response = as_user("member").post(url(workspace, rest="assets/volumes/new/"), {"name": "Training-Data"}, **HTMX)
    assert response.status_code == 422 and b"already exists" in response.content


def test_the_edition_limit_is_explained_when_reached(as_user, workspace, cast, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_VOLUMES_PER_WORKSPACE": 2}
    volume_create(workspace, "one-1", owner=cast["owner"])
    volume_create(workspace, "two-2", owner=cast["owner"])
    dialog = as_user("member").get(url(workspace, rest="assets/volumes/new/"), **HTMX).content.decode()
    assert "This workspace has 2 of 2 volumes" in dialog and "Delete a volume" in dialog
    response = as_user("member").post(url(workspace, rest="assets/volumes/new/"), {"name": "three-3"}, **HTMX)
    assert response.status_code == 422 and "limit of the community edition" in response.content.decode()


def test_without_volume_storage_the_page_warns_and_creation_says_how_to_fix_it(as_user, workspace):
    workspace.volume_storage = None
    workspace.save()
    page = as_user("admin").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "No volume storage selected" in page and "Settings › Storage" in page
    response = as_user("admin").post(url(workspace, rest="assets/volumes/new/"), {"name": "x-data"}, **HTMX)
    assert response.status_code == 422 and "Settings &gt; Storage" in response.content.decode()


def test_a_member_without_access_is_told_the_volumes_exist_but_are_not_shared(as_user, workspace, volume, cast):
    from volumes.permissions import set_share

    set_share(volume, cast["reader"], "read")  # shared: no longer open to every member
    html = as_user("member").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "No volumes yet" not in html
    assert "none of them shared with you" in html and "1 volume in this workspace" in html


def test_a_name_taken_by_a_volume_you_cannot_see_says_how_to_go_on(as_user, workspace, volume, cast):
    from volumes.permissions import set_share

    set_share(volume, cast["reader"], "read")
    response = as_user("member").post(url(workspace, rest="assets/volumes/new/"), {"name": "training-data"}, **HTMX)
    text = response.content.decode()
    assert response.status_code == 422 and "not shared with you" in text and "owner" in text
    assert "pick another name" in text


def test_a_jobs_lease_reads_as_the_job_on_its_worker(as_user, workspace, volume, cast):
    from volumes.models import Job

    job = Job.objects.create(workspace=workspace, user=cast["owner"], language="python", content="x")
    leases.try_acquire(volume.pk, f"vm:1979 job {job.pk}", job_id=job.pk)
    badge = as_user("member").get(url(workspace, rest="assets/volumes/leases/"), **HTMX).content.decode()
    banner = as_user("owner").get(url(workspace, volume)).content.decode()
    for html in (badge, banner):
        assert f"job {job.pk} on vm:1979" in html
        assert f"vm:1979 job {job.pk}" not in html and f"(job {job.pk})" not in html
    assert leases.current_holder(volume.pk).describe().startswith(f"job {job.pk} on vm:1979 since ")
