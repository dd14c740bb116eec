"""Jobs: the run form, the runs list, the live run page and cancel."""
import pytest

from volumes.models import Job
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from .conftest import HTMX, url

pytestmark = pytest.mark.django_db

SCRIPT = """# volume: demo-data data
def main(name: str = "x"):
    open("data/hello.txt", "w").write(name)
    return {"hello": name}
"""


@pytest.fixture
def cache(settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}


def test_the_run_form_is_prefilled_with_an_annotation_example(as_user, workspace):
    html = as_user("member").get(url(workspace, rest="jobs/run/")).content.decode()
    assert "# volume: demo-data data" in html and "job-examples" in html and 'value="python" selected' in html


def test_bad_json_args_and_annotation_errors_are_reported_with_what_to_do(as_user, workspace):
    client = as_user("member")
    bad_json = client.post(url(workspace, rest="jobs/run/"), {"language": "python", "content": SCRIPT, "args": "{x"})
    assert bad_json.status_code == 422 and b"not valid JSON" in bad_json.content
    not_object = client.post(url(workspace, rest="jobs/run/"), {"language": "python", "content": SCRIPT, "args": "[1]"})
    assert b"must be a JSON object" in not_object.content
    bad_path = client.post(url(workspace, rest="jobs/run/"),
                           {"language": "python", "content": "# volume: demo-data /etc\n", "args": ""})
    assert bad_path.status_code == 422 and b"Line 1: absolute mount path" in bad_path.content
    assert not Job.objects.exists()


def test_submitting_creates_a_job_sends_it_to_celery_and_opens_its_page(as_user, workspace, cast,
                                                                       django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("volumes.tasks.run_job.delay", lambda job_id: sent.append(job_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user("member").post(url(workspace, rest="jobs/run/"),
                                          {"language": "python", "content": SCRIPT, "args": '{"name": "y"}'})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == url(workspace, rest=f"jobs/{job.pk}/")
    assert sent == [job.pk] and job.args == {"name": "y"} and job.user == cast["member"]


def test_a_running_job_polls_and_a_finished_one_stops_with_result_and_figures(as_user, workspace, cast, cache):
    job = job_submit(workspace, cast["owner"], "python", SCRIPT, {"name": "z"}, enqueue=False)
    live = as_user("owner").get(url(workspace, rest=f"jobs/{job.pk}/live/"), **HTMX).content.decode()
    assert 'hx-trigger="every 1s"' in live and "Queued" in live
    job_run(job.pk)
    done = as_user("owner").get(url(workspace, rest=f"jobs/{job.pk}/live/"), **HTMX).content.decode()
    assert "hx-trigger" not in done and "Success" in done and "&quot;hello&quot;: &quot;z&quot;" in done
    assert "demo-data" in done and "read-write" in done and "#0 → <strong>#1</strong>" in done
    listing = as_user("owner").get(url(workspace, rest="jobs/")).content.decode()
    assert f"Job {job.pk}" in listing and "demo-data" in listing


def test_cancel_stops_a_queued_job(as_user, workspace, cast):
    job = job_submit(workspace, cast["owner"], "python", SCRIPT, {}, enqueue=False)
    response = as_user("owner").post(url(workspace, rest=f"jobs/{job.pk}/cancel/"), **HTMX)
    assert response.status_code == 200 and "Cancellation" in response["HX-Trigger"]
    job.refresh_from_db()
    assert job.status == "cancelled"
    again = as_user("owner").post(url(workspace, rest=f"jobs/{job.pk}/cancel/"), **HTMX)
    assert again.status_code == 400 and "already finished" in again["HX-Trigger"]


def test_members_see_their_own_runs_and_admins_all(as_user, workspace, cast):
    mine = job_submit(workspace, cast["member"], "python", SCRIPT, {}, enqueue=False)
    theirs = job_submit(workspace, cast["owner"], "python", SCRIPT, {}, enqueue=False)
    member = as_user("member").get(url(workspace, rest="jobs/")).content.decode()
    assert f"Job {mine.pk}<" in member and f"Job {theirs.pk}<" not in member
    admin = as_user("admin").get(url(workspace, rest="jobs/")).content.decode()
    assert f"Job {mine.pk}<" in admin and f"Job {theirs.pk}<" in admin
    assert as_user("member").post(url(workspace, rest=f"jobs/{theirs.pk}/cancel/")).status_code == 404


def test_job_times_carry_their_date_and_time_zone(as_user, workspace, cast):
    from volumes.models import Job

    job = Job.objects.create(workspace=workspace, user=cast["owner"], language="python", content="x")
    html = as_user("owner").get(f"/w/{workspace.pk}/jobs/{job.pk}/").content.decode()
    assert f'{job.created_at:%Y-%m-%d %H:%M:%S} UTC' in html
