"""Job logs are capped: head and tail kept within VOLUMES_JOB_LOG_MAX_BYTES with a note of what was cut,
appended as chunk rows (earlier rows are never rewritten), paged by the API and the run page."""
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from volumes.models import Job, JobLogChunk
from volumes.runner.run import job_run
from volumes.services.jobs import JobReporter, job_log_append, job_submit

pytestmark = pytest.mark.django_db
CAP = 64 * 1024


@pytest.fixture
def capped(settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "JOB_LOG_MAX_BYTES": CAP, "CACHE_DIR": cache_root}


@pytest.fixture
def job(workspace, cast):
    return job_submit(workspace, cast["owner"], "python", "def main():\n    return 1\n", enqueue=False)


def stored(job) -> int:
    return sum(len(c.text.encode()) for c in JobLogChunk.objects.filter(job=job))


def test_a_huge_log_keeps_its_head_and_tail_within_the_cap_and_says_what_was_cut(capped, job):
    reporter = JobReporter(job.pk)
    for i in range(5000):
        reporter.log(f"line {i:05d} " + "x" * 90)
        if i % 50 == 0:
            reporter.flush()
    reporter.flush()
    text = Job.objects.get(pk=job.pk).log
    assert stored(job) <= CAP
    assert "line 00000 " in text.splitlines()[0] and "line 04999 " in text.splitlines()[-1]
    assert "bytes of the log were cut here" in text
    assert len(text.encode()) <= CAP + 200  # the note is all that is added


def test_appending_inserts_rows_and_never_rewrites_earlier_ones(capped, job):
    job_log_append(job.pk, "first\n")
    first = JobLogChunk.objects.get(job=job)
    for i in range(200):
        job_log_append(job.pk, f"more {i}\n" + "y" * 1000 + "\n")
    again = JobLogChunk.objects.get(pk=first.pk)
    assert (again.offset, again.text) == (0, "first\n")
    assert JobLogChunk.objects.filter(job=job).count() > 2


def test_an_agent_cannot_append_past_the_cap(capped, workspace, cast, client_for_admin):
    job_submit(workspace, cast["owner"], "python", "def main(): pass\n", enqueue=False)
    spec = client_for_admin.post("/api/w/acme/agent/claim/", {"worker": "w"}, format="json").json()
    for i in range(30):
        response = client_for_admin.post(f"/api/w/acme/agent/jobs/{spec['id']}/log/", {"text": f"{i} " + "z" * 20000},
                                         format="json", HTTP_X_JOB_KEY=spec["job_key"])
        assert response.status_code == 200
    assert stored(Job.objects.get(pk=spec["id"])) <= CAP


@pytest.mark.django_db(transaction=True)  # the lease renewer thread flushes on its own connection
def test_a_real_job_printing_megabytes_keeps_a_capped_log(capped, job):
    Job.objects.filter(pk=job.pk).update(
        content="def main():\n    for i in range(60000):\n        print(f'out {i:06d} ' + 'p' * 80)\n    return 7\n")
    done = job_run(job.pk)
    assert done.status == "success" and done.result == 7
    assert stored(done) <= CAP
    assert "out 059999" in done.log and "cut here" in done.log and "started on" in done.log


def test_the_api_pages_the_log_and_the_run_page_shows_its_end(capped, job, cast):
    for i in range(3000):
        job_log_append(job.pk, f"row {i:05d} " + "r" * 60 + "\n")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=cast['owner']).key}")
    url = f"/api/w/acme/jobs/{job.pk}/log/"
    pages, offset = [], 0
    while True:
        page = api.get(url, {"offset": offset, "limit": 10000}).json()
        assert len(page["text"].encode()) <= 10000 + 200
        pages.append(page["text"])
        if page["next_offset"] is None:
            break
        offset = page["next_offset"]
    assert len(pages) > 3
    assert "".join(pages) == Job.objects.get(pk=job.pk).log
    assert page["total_bytes"] > CAP and page["cut_bytes"] > 0
    detail = api.get(f"/api/w/acme/jobs/{job.pk}/").json()
    assert detail["log_bytes"] == page["total_bytes"] and len(detail["log"].encode()) <= CAP + 200
    client = Client()
    client.force_login(cast["owner"])
    html = client.get(f"/w/acme/jobs/{job.pk}/").content.decode()
    assert "row 02999" in html and "row 00000" not in html  # the page shows the end
    assert f"/api/w/acme/jobs/{job.pk}/log/" in html or f"/w/acme/jobs/{job.pk}/log/" in html
    full = client.get(f"/w/acme/jobs/{job.pk}/log/")
    assert full.status_code == 200 and full["Content-Type"].startswith("text/plain")
    assert b"row 00000" in full.content and b"row 02999" in full.content


@pytest.fixture
def client_for_admin(cast):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=cast['admin']).key}")
    return api
