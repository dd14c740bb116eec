"""The engine endpoints agent workers use, driven by hand: who may call them and what they refuse."""
import hashlib
import json

import pytest
from django.contrib.auth.models import Group

from volumes.engine import leases
from volumes.models import Job, Volume, VolumeCommit
from volumes.permissions import set_share
from volumes.services.jobs import job_submit

from .helpers import seed

pytestmark = pytest.mark.django_db

A = "/api/w/acme/agent/"
SCRIPT = "# volume: training-data data\ndef main():\n    return 1\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def agent(client_for):
    return client_for("admin")


def claim(api, worker="w1"):
    return api.post(A + "claim/", {"worker": worker}, format="json")


class Job_:
    """One claimed job, driven through the endpoints."""

    def __init__(self, api, spec):
        self.api, self.spec = api, spec
        self.base = f"{A}jobs/{spec['id']}/"
        self.h = {"HTTP_X_JOB_KEY": spec["job_key"]}

    def post(self, rest, data=None):
        return self.api.post(self.base + rest, data or {}, format="json", **self.h)

    def mount(self, rest):
        return f"{self.base}volumes/training-data/{rest}"

    def acquire(self, wait=0):
        return self.api.post(self.mount("lease/"), {"holder": "agent w1", "wait": wait}, format="json", **self.h)

    def put_blob(self, token, data, digest=None):
        return self.api.generic("PUT", self.mount(f"blobs/{digest or sha(data)}?token={token}"), data,
                                content_type="application/octet-stream", **self.h)

    def commit(self, token, parent, entries):
        doc = {"format": 1, "generation": parent + 1, "entries": entries}
        return self.api.post(self.mount("commit/"), {"token": token, "parent": parent, "manifest": doc},
                             format="json", **self.h)


def file_entry(path, data, gen=1):
    return {"path": path, "type": "file", "size": len(data), "hash": sha(data), "mode": 0o644, "mtime_ns": 0,
            "target": "", "gen": gen}


@pytest.fixture
def claimed(agent, volume, cast):
    seed(volume, {"old.txt": b"old"}, user=cast["owner"])
    job_submit(volume.workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    response = claim(agent)
    assert response.status_code == 200, response.content
    return Job_(agent, response.json())


def test_claim_returns_the_spec_with_mount_plans_and_server_settings(claimed, settings):
    spec = claimed.spec
    assert spec["mounts"] == [{"name": "training-data", "mount_path": "data", "read_only": False, "line": 1,
                               "max_size": None}]
    assert spec["user"] == "owner" and spec["language"] == "python" and spec["content"] == SCRIPT
    assert spec["settings"]["LEASE_TTL"] == settings.VOLUMES["LEASE_TTL"]
    job = Job.objects.get(pk=spec["id"])
    assert job.status == "running" and job.worker == "agent w1" and "agent user admin" in job.log


def test_claim_answers_204_when_nothing_is_queued_and_skips_jobs_that_fail_to_prepare(agent, workspace, cast):
    assert claim(agent).status_code == 204
    bad = job_submit(workspace, cast["owner"], "python", "# volume: x data\ndef main(): pass\n", enqueue=False)
    assert claim(agent).status_code == 204
    bad.refresh_from_db()
    assert bad.status == "failure" and "line 1" in bad.error


def test_only_admins_and_members_of_the_agents_group_may_run_agents(client_for, workspace, cast):
    job_submit(workspace, cast["owner"], "python", "def main(): pass\n", enqueue=False)
    refused = claim(client_for("writer"))
    assert refused.status_code == 403 and "agents" in refused.json()["detail"]
    assert claim(client_for("outsider")).status_code == 404
    assert claim(client_for(None)).status_code == 401
    Group.objects.create(name="agents").user_set.add(cast["writer"])
    assert claim(client_for("writer")).status_code == 200


def test_only_the_agent_that_claimed_a_job_may_act_on_it(claimed, client_for, cast):
    other = client_for("writer")
    Group.objects.create(name="agents").user_set.add(cast["writer"])
    for api, headers in [(other, claimed.h), (claimed.api, {}), (claimed.api, {"HTTP_X_JOB_KEY": "forged"})]:
        response = api.post(claimed.mount("lease/"), {"holder": "x"}, format="json", **headers)
        assert response.status_code == 403, response.content
    assert Volume.objects.get(name="training-data").lease_token == 1  # only the seed's lease


def test_a_full_push_through_the_endpoints(claimed, volume):
    lease = claimed.acquire().json()
    assert lease["generation"] == 1 and lease["volume_name"] == "training-data"
    token = lease["token"]
    manifest = claimed.api.get(claimed.mount(f"manifest/?token={token}&generation=1"), **claimed.h).json()
    assert [e["path"] for e in manifest["entries"]] == ["old.txt"]
    new = b"new contents"
    missing = claimed.api.post(claimed.mount("blobs/missing/"), {"token": token, "hashes": [sha(new), sha(b"old")]},
                               format="json", **claimed.h)
    assert missing.json() == {"missing": [sha(new)]}
    assert claimed.put_blob(token, new).status_code == 201
    assert claimed.put_blob(token, new).json() == {"stored": False}  # written once, never overwritten
    blob = claimed.api.get(claimed.mount(f"blobs/{sha(new)}?token={token}"), **claimed.h)
    assert b"".join(blob.streaming_content) == new
    entries = [file_entry("new.txt", new, 2), file_entry("old.txt", b"old", 1)]
    committed = claimed.commit(token, 1, entries)
    assert committed.status_code == 200, committed.json()
    assert committed.json()["generation"] == 2
    commit = VolumeCommit.objects.get(volume=volume, generation=2)
    assert (commit.user.username, commit.job_id, commit.files_added) == ("owner", claimed.spec["id"], 1)
    assert claimed.post("volumes/training-data/lease/release/", {"token": token}).json() == {"released": True}


def test_a_blob_whose_bytes_do_not_match_its_name_is_refused(claimed, storage_root):
    token = claimed.acquire().json()["token"]
    response = claimed.put_blob(token, b"evil", digest=sha(b"good"))
    assert response.status_code == 400 and response.json()["error"] == "integrity_error"
    assert not list(storage_root.rglob(sha(b"good")))
    assert claimed.put_blob(token, b"x", digest="../../etc").status_code in (400, 404)


def test_a_commit_is_refused_for_missing_blobs_bad_manifests_and_stale_tokens(claimed, volume):
    token = claimed.acquire().json()["token"]
    never_uploaded = claimed.commit(token, 1, [file_entry("ghost.txt", b"ghost")])
    assert never_uploaded.status_code == 400 and "never uploaded" in never_uploaded.json()["detail"]
    hostile = claimed.commit(token, 1, [file_entry("../escape.txt", b"old")])
    assert hostile.status_code == 400 and hostile.json()["error"] == "integrity_error"
    orphan = claimed.commit(token, 1, [file_entry("no/parent.txt", b"old")])
    assert orphan.status_code == 400
    wrong_parent = claimed.commit(token, 0, [file_entry("old.txt", b"old")])
    assert wrong_parent.status_code == 409
    stale = claimed.commit(token - 1, 1, [file_entry("old.txt", b"old")])
    assert stale.status_code == 409 and stale.json()["error"] == "lease_lost"
    volume.refresh_from_db()
    assert volume.generation == 1


def test_a_read_only_job_can_pull_but_never_push(agent, volume, cast):
    seed(volume, {"old.txt": b"old"}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")
    job_submit(volume.workspace, cast["reader"], "python", SCRIPT, enqueue=False)
    job = Job_(agent, claim(agent).json())
    assert job.spec["mounts"][0]["read_only"] is True
    token = job.acquire().json()["token"]
    assert job.api.get(job.mount(f"manifest/?token={token}&generation=1"), **job.h).status_code == 200
    assert job.put_blob(token, b"x").status_code == 403
    assert job.commit(token, 1, [file_entry("old.txt", b"old")]).status_code == 403


def test_acquire_answers_409_with_the_holder_while_another_holds_the_volume(claimed, volume):
    other = leases.try_acquire(volume.pk, "celery-3 job 77")
    response = claimed.acquire(wait=0.2)
    assert response.status_code == 409
    assert response.json()["holder"] == "celery-3 job 77" and response.json()["error"] == "lease_held"
    stolen = claimed.post("volumes/training-data/lease/release/", {"token": other.token})
    assert stolen.json() == {"released": False}  # not this job's lease
    assert leases.current_holder(volume.pk).holder == "celery-3 job 77"
    leases.release(other)
    assert claimed.acquire().status_code == 200


def test_heartbeat_reports_cancellation_and_finish_records_the_outcome(claimed, owner_api):
    assert claimed.post("heartbeat/").json() == {"cancel": False}
    owner_api.post(f"/api/w/acme/jobs/{claimed.spec['id']}/cancel/")
    assert claimed.post("heartbeat/").json() == {"cancel": True}
    assert claimed.post("log/", {"text": "[00:00:01] hello\n"}).status_code == 200
    assert claimed.post("volumes/training-data/figures/", {"figures": {"files_pulled": 3}}).status_code == 200
    assert claimed.post("volumes/training-data/figures/", {"figures": {"status": 1}}).status_code == 400
    assert claimed.post("finish/", {"status": "cancelled", "error": "cancelled"}).status_code == 200
    job = Job.objects.get(pk=claimed.spec["id"])
    assert job.status == "cancelled" and "hello" in job.log and job.mounts.get().files_pulled == 3
    token = 1
    renew = claimed.post("volumes/training-data/lease/renew/", {"token": token})
    assert renew.status_code == 409  # a finished job holds nothing any more


def test_the_manifest_document_round_trips(claimed):
    token = claimed.acquire().json()["token"]
    doc = claimed.api.get(claimed.mount(f"manifest/?token={token}&generation=1"), **claimed.h).json()
    from volumes.engine.manifest import Manifest

    assert Manifest.from_json(json.dumps(doc).encode()).entries["old.txt"].size == 3
