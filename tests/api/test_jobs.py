"""Jobs through the API: create, list, detail, cancel; members see their own, admins all."""
import pytest

from volumes.models import Job
from volumes.runner.run import job_run

pytestmark = pytest.mark.django_db

URL = "/api/w/acme/jobs/"
SCRIPT = "# volume: job-data data\ndef main(n: int):\n    return n * 2\n"


def submit(api, content=SCRIPT, args=None, language="python"):
    return api.post(URL, {"language": language, "content": content, "args": args or {"n": 21}}, format="json")


def test_a_job_is_created_queued_and_its_detail_shows_log_result_and_figures(owner_api, workspace, settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    response = submit(owner_api)
    assert response.status_code == 201
    job = response.json()
    assert (job["status"], job["user"], job["language"], job["args"]) == ("queued", "owner", "python", {"n": 21})
    job_run(job["id"])  # what a worker does with it
    detail = owner_api.get(f"{URL}{job['id']}/").json()
    assert detail["status"] == "success" and detail["result"] == 42 and "started" in detail["log"]
    [mount] = detail["mounts"]
    assert (mount["volume"], mount["mount_path"], mount["mode"]) == ("job-data", "data", "rw")
    assert mount["lease_token"] == 1 and mount["base_generation"] == 0


@pytest.mark.parametrize("payload,field", [
    ({"language": "cobol", "content": "x"}, "language"),
    ({"language": "python"}, "content"),
    ({"language": "python", "content": "x", "args": [1, 2]}, "args"),
    ({"language": "python", "content": "a\x00b"}, "content"),
])
def test_it_refuses_bad_jobs(owner_api, workspace, payload, field):
    response = owner_api.post(URL, payload, format="json")
    assert response.status_code == 400 and field in response.json()["detail"]


def test_members_see_their_own_jobs_and_admins_see_all(client_for, workspace):
    mine = submit(client_for("owner")).json()["id"]
    theirs = submit(client_for("writer")).json()["id"]
    assert [j["id"] for j in client_for("owner").get(URL).json()["results"]] == [mine]
    assert {j["id"] for j in client_for("admin").get(URL).json()["results"]} == {mine, theirs}
    assert client_for("owner").get(f"{URL}{theirs}/").status_code == 404
    assert client_for("outsider").get(URL).status_code == 404
    assert client_for("outsider").post(URL, {"language": "python", "content": "x"}, format="json").status_code == 404


def test_cancel_stops_a_queued_job_and_refuses_a_finished_one(owner_api, client_for, workspace):
    job_id = submit(owner_api).json()["id"]
    assert client_for("writer").post(f"{URL}{job_id}/cancel/").status_code == 404
    response = owner_api.post(f"{URL}{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert job_run(job_id) is None  # it never starts
    again = owner_api.post(f"{URL}{job_id}/cancel/")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]


def test_cancelling_a_running_job_asks_its_worker_to_stop(client_for, workspace):
    job_id = submit(client_for("owner")).json()["id"]
    Job.objects.filter(pk=job_id).update(status="running")
    response = client_for("admin").post(f"{URL}{job_id}/cancel/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)


def test_job_lists_are_paginated(owner_api, workspace):
    for _ in range(3):
        submit(owner_api)
    page = owner_api.get(URL + "?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
