"""Jobs: re-run, filters by status, user and volume, a volume's Jobs tab, volume links in job
lists, and Run prefilled from a volume ("Use in a script") or from an earlier job."""
import html

import pytest

from volumes.models import Job, JobVolume
from volumes.services.volumes import volume_create

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db


def make_job(workspace, user, volume=None, status="success", content="# volume: v data\n"):
    job = Job.objects.create(workspace=workspace, user=user, language="python", content=content,
                             args={"n": 1}, status=status)
    if volume is not None:
        JobVolume.objects.create(job=job, volume=volume, volume_name=volume.name, mount_path="data", mode="rw",
                                lease_token=0)
    return job


@pytest.fixture
def runs(workspace, cast):
    a = volume_create(workspace, "alpha", owner=cast["owner"])
    b = volume_create(workspace, "beta", owner=cast["owner"])
    return {
        "owner_alpha": make_job(workspace, cast["owner"], a, "success"),
        "owner_beta": make_job(workspace, cast["owner"], b, "failure"),
        "writer_alpha": make_job(workspace, cast["writer"], a, "failure"),
        "plain": make_job(workspace, cast["writer"], None, "cancelled"),
    }


def shown(response) -> set[int]:
    text = response.content.decode()
    return {job.pk for job in Job.objects.all() if f">Job {job.pk}<" in text}


def test_jobs_filter_by_status_user_and_volume(as_user, workspace, runs):
    admin = as_user("admin")
    jobs = url(workspace, rest="jobs/")
    assert shown(admin.get(jobs)) == {j.pk for j in runs.values()}
    assert shown(admin.get(jobs + "?status=failure")) == {runs["owner_beta"].pk, runs["writer_alpha"].pk}
    assert shown(admin.get(jobs + "?user=writer")) == {runs["writer_alpha"].pk, runs["plain"].pk}
    assert shown(admin.get(jobs + "?volume=ALPHA")) == {runs["owner_alpha"].pk, runs["writer_alpha"].pk}
    both = admin.get(jobs + "?volume=alpha&status=failure&user=writer")
    assert shown(both) == {runs["writer_alpha"].pk}
    assert b"No jobs match" in admin.get(jobs + "?status=running").content
    # The live list keeps its filters when it polls.
    live = make_job(workspace, runs["plain"].user, None, "running")
    polled = admin.get(jobs + "?status=running").content.decode()
    assert 'hx-get="/w/acme/jobs/?status=running"' in polled and f">Job {live.pk}<" in polled
    # Members see their own jobs; the user filter is for admins only.
    assert shown(as_user("owner").get(jobs + "?user=writer")) == {runs["owner_alpha"].pk, runs["owner_beta"].pk}


def test_volume_names_in_job_lists_link_to_the_volume(as_user, workspace, runs):
    page = as_user("admin").get(url(workspace, rest="jobs/")).content.decode()
    assert f'href="/w/{workspace.pk}/volumes/alpha/"><code>alpha</code></a>' in page


def test_each_volume_has_a_jobs_tab(as_user, workspace, runs):
    tab = as_user("admin").get(url(workspace, rest="volumes/alpha/jobs/"))
    assert tab.status_code == 200 and shown(tab) == {runs["owner_alpha"].pk, runs["writer_alpha"].pk}
    assert b'aria-current="page"><svg' in tab.content and b"Jobs that mounted alpha" in tab.content
    assert shown(as_user("owner").get(url(workspace, rest="volumes/alpha/jobs/"))) == {runs["owner_alpha"].pk}
    fragment = as_user("admin").get(url(workspace, rest="volumes/alpha/jobs/"), **HTMX)
    assert b'id="job-rows"' in fragment.content and b"<html" not in fragment.content
    assert as_user("outsider").get(url(workspace, rest="volumes/alpha/jobs/")).status_code == 404


def test_a_job_is_run_again_as_a_new_job_of_the_caller(as_user, workspace, runs, cast, django_capture_on_commit_callbacks):
    source = runs["owner_alpha"]
    with django_capture_on_commit_callbacks(execute=False):
        again = as_user("owner").post(url(workspace, rest=f"jobs/{source.pk}/rerun/"))
    new = Job.objects.latest("pk")
    assert again.status_code == 302 and again["Location"] == f"/w/{workspace.pk}/jobs/{new.pk}/"
    assert (new.content, new.args, new.language, new.user, new.status) == (
        source.content, source.args, "python", cast["owner"], "queued")
    # Someone who cannot see the job cannot re-run it.
    assert as_user("member").post(url(workspace, rest=f"jobs/{source.pk}/rerun/")).status_code == 404
    detail = as_user("owner").get(url(workspace, rest=f"jobs/{source.pk}/")).content.decode()
    assert "Run again" in detail and f"jobs/run/?from={source.pk}" in detail


def test_run_is_prefilled_from_a_volume_or_an_earlier_job(as_user, workspace, runs):
    client = as_user("owner")
    page = html.unescape(client.get(url(workspace, rest="jobs/run/?volume=alpha")).content.decode())
    assert "# volume: alpha data" in page and "demo-data data" not in page.split("job-examples")[0]
    copied = html.unescape(client.get(url(workspace, rest=f"jobs/run/?from={runs['owner_beta'].pk}")).content.decode())
    assert '{"n": 1}' in copied
    hidden = client.get(url(workspace, rest=f"jobs/run/?from={runs['writer_alpha'].pk}")).content.decode()
    assert '{&quot;n&quot;: 1}' not in hidden  # another member's job is not copied
    volume_page = client.get(url(workspace, rest="volumes/alpha/")).content.decode()
    assert 'data-copy="#mount-line"' in volume_page and "jobs/run/?volume=alpha" in volume_page
