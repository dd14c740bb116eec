"""Settings > Workers: the Celery and agent workers a workspace's admins can see, silent ones marked."""
from datetime import timedelta

import pytest
from django.utils import timezone

from volumes.models import WorkerHeartbeat
from volumes.services.jobs import job_claim, job_submit
from volumes.services.workers import worker_heartbeat

from ..jobs.test_celery_workers import start_worker, stop, wait_for

pytestmark = pytest.mark.django_db

URL = "/w/acme/settings/workers/"


def test_admins_see_workers_with_heartbeat_running_job_cache_and_version_and_silent_ones_marked(
        as_user, workspace, cast):
    worker_heartbeat("host-a:11", "celery", version="1.0.0", cache_bytes=5 * 1024**2, cache_max_bytes=10 * 1024**3)
    worker_heartbeat("agent gpu-1", "agent", workspace="acme", version="1.0.0")
    worker_heartbeat("agent other", "agent", workspace="other-ws")  # serves another workspace only
    worker_heartbeat("host-b:12", "celery")
    WorkerHeartbeat.objects.filter(name="host-b:12").update(last_seen=timezone.now() - timedelta(minutes=5))
    job = job_submit(workspace, cast["owner"], "python", "def main():\n    return 1\n", enqueue=False)
    job_claim(job.pk, "host-a:11")
    page = as_user("admin").get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-worker="host-a:11"' in html and 'data-worker="agent gpu-1"' in html
    assert "agent other" not in html
    row_a = html.split('data-worker="host-a:11"')[1].split("</tr>")[0]
    assert f"job {job.pk}" in row_a and "5.0\xa0MB of 10.0\xa0GB" in row_a and "1.0.0" in row_a and "alive" in row_a
    row_b = html.split('data-worker="host-b:12"')[1].split("</tr>")[0]
    assert "silent" in row_b and "5\xa0minutes ago" in row_b
    assert as_user("member").get(URL).status_code == 403
    assert as_user("outsider").get(URL).status_code == 404


def test_an_agent_claiming_work_reports_itself(client_for_agent, workspace):
    response = client_for_agent.post("/api/w/acme/agent/claim/", {"worker": "box-7", "version": "1.0.0",
                                                                   "cache_bytes": 123, "cache_max_bytes": 1000},
                                     format="json")
    assert response.status_code == 204
    row = WorkerHeartbeat.objects.get(name="agent box-7")
    assert (row.kind, row.workspaces, row.cache_bytes, row.version) == ("agent", ["acme"], 123, "1.0.0")


@pytest.fixture
def client_for_agent(cast):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(cast["admin"])
    return api


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_process_reports_its_heartbeat(workspace, tmp_path):
    worker = start_worker(tmp_path, "beating")
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(name="beating").exists(), 60, "the heartbeat")
        row = WorkerHeartbeat.objects.get(name="beating")
        assert row.kind == "celery" and row.version and row.cache_max_bytes
    finally:
        stop(worker)
