"""The engine endpoints agent workers use, driven by hand: who may call them and what they refuse."""
import hashlib
import json

import pytest
from prometheus_client import REGISTRY

from volumes.engine import leases
from volumes.models import Job, Volume, VolumeCommit
from volumes.permissions import set_share
from volumes.services.jobs import job_submit
from volumes.services.workspaces import agent_role_grant

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


def test_only_admins_and_members_with_the_agent_role_may_run_agents(client_for, workspace, cast):
    job_submit(workspace, cast["owner"], "python", "def main(): pass\n", enqueue=False)
    refused = claim(client_for("writer"))
    assert refused.status_code == 403 and "agent role" in refused.json()["detail"]
    assert claim(client_for("outsider")).status_code == 404
    assert claim(client_for(None)).status_code == 401
    agent_role_grant(workspace, cast["writer"])
    assert claim(client_for("writer")).status_code == 200


def test_only_the_agent_that_claimed_a_job_may_act_on_it(claimed, client_for, cast):
    other = client_for("writer")
    agent_role_grant(claimed_workspace(), cast["writer"])
    for api, headers in [(other, claimed.h), (claimed.api, {}), (claimed.api, {"HTTP_X_JOB_KEY": "forged"})]:
        response = api.post(claimed.mount("lease/"), {"holder": "x"}, format="json", **headers)
        assert response.status_code == 403, response.content
    assert Volume.objects.get(name="training-data").lease_token == 1  # only the seed's lease


def claimed_workspace():
    from volumes.models import Workspace

    return Workspace.objects.get(pk="acme")


def test_the_missing_blobs_request_passes_how_many_blobs_the_base_holds_and_refuses_a_negative_count(
        claimed, volume, monkeypatch):
    """With the count, a server over network storage may list a small volume's blobs instead of asking for each."""
    from volumes.engine.remote import DirectRemote

    seen = []
    real = DirectRemote.missing_blobs
    monkeypatch.setattr(DirectRemote, "missing_blobs",
                        lambda self, lease, hashes, stored=None: seen.append(stored) or real(self, lease, hashes, stored))
    token = claimed.acquire().json()["token"]
    for extra, answer in [({}, None), ({"stored": 3}, 3), ({"stored": 0}, 0)]:
        missing = claimed.api.post(claimed.mount("blobs/missing/"), {"token": token, "hashes": [sha(b"x")], **extra},
                                   format="json", **claimed.h)
        assert missing.json()["missing"] == [sha(b"x")] and seen.pop() == answer
    refused = claimed.api.post(claimed.mount("blobs/missing/"), {"token": token, "hashes": [sha(b"x")], "stored": -1},
                               format="json", **claimed.h)
    assert refused.status_code == 400 and "stored" in refused.json()["detail"] and not seen


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
    proxied = {d: REGISTRY.get_sample_value("volumes_agent_proxy_bytes_total", {"direction": d}) or 0
               for d in ("upload", "download")}
    assert claimed.put_blob(token, new).status_code == 201
    assert claimed.put_blob(token, new).json() == {"stored": False}  # written once, never overwritten
    blob = claimed.api.get(claimed.mount(f"blobs/{sha(new)}?token={token}"), **claimed.h)
    assert b"".join(blob.streaming_content) == new
    # Both transfers went through this server: the metrics count them as agent proxy bytes.
    assert REGISTRY.get_sample_value("volumes_agent_proxy_bytes_total", {"direction": "upload"}) >= \
        proxied["upload"] + len(new)
    assert REGISTRY.get_sample_value("volumes_agent_proxy_bytes_total", {"direction": "download"}) == \
        proxied["download"] + len(new)
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


TWO = "# volume: alpha a\n# volume: beta b\ndef main():\n    return 1\n"


def test_a_batch_commit_of_two_volumes_commits_both_or_neither(agent, workspace, cast):
    job_submit(workspace, cast["owner"], "python", TWO, enqueue=False)
    job = Job_(agent, claim(agent).json())
    tokens = {}
    for name in ("alpha", "beta"):
        response = agent.post(f"{job.base}volumes/{name}/lease/", {"holder": "agent w1", "wait": 0}, format="json",
                              **job.h)
        tokens[name] = response.json()["token"]
        blob = name.encode()
        put = agent.generic("PUT", f"{job.base}volumes/{name}/blobs/{sha(blob)}?token={tokens[name]}", blob,
                            content_type="application/octet-stream", **job.h)
        assert put.status_code == 201

    def batch(beta_parent):
        volumes = [{"name": name, "token": tokens[name], "parent": parent,
                    "manifest": {"format": 1, "generation": parent + 1,
                                 "entries": [file_entry(f"{name}.txt", name.encode())]}}
                   for name, parent in (("alpha", 0), ("beta", beta_parent))]
        return job.post("commit/", {"volumes": volumes})

    conflict = batch(beta_parent=3)
    assert conflict.status_code == 409, conflict.json()
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 0, "beta": 0}
    assert not VolumeCommit.objects.exists()
    ok = batch(beta_parent=0)
    assert ok.status_code == 200, ok.json()
    assert [row["generation"] for row in ok.json()["committed"]] == [1, 1]
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 1, "beta": 1}


def test_an_agent_cannot_reuse_a_known_blob_under_a_false_size_to_slip_past_the_cap(agent, volume, cast, workspace):
    big = b"b" * 900 * 1024
    seed(volume, {"big.bin": big}, user=cast["owner"])
    workspace.max_volume_size = 1024 * 1024
    workspace.save(update_fields=["max_volume_size"])
    job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    job = Job_(agent, claim(agent).json())
    token = job.acquire().json()["token"]
    copies = [{**file_entry(f"copy-{i}.bin", big, 2), "size": 1} for i in range(5)]  # 4.5 MiB claimed as 5 bytes
    lying = job.commit(token, 1, [file_entry("big.bin", big, 1), *copies])
    assert lying.status_code == 400 and lying.json()["error"] == "integrity_error", lying.json()
    assert "921,600 bytes" in lying.json()["detail"]
    honest = job.commit(token, 1, [file_entry("big.bin", big, 1), file_entry("copy.bin", big, 2)])
    assert honest.status_code == 413  # over the cap, said as such
    assert Volume.objects.get(pk=volume.pk).generation == 1


def test_a_read_only_job_pins_reads_renews_and_releases_while_another_holds_the_lease(agent, volume, cast):
    from volumes.models import VolumePin

    data = b"old"
    seed(volume, {"old.txt": data}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")
    job_submit(volume.workspace, cast["reader"], "python", SCRIPT, enqueue=False)
    job = Job_(agent, claim(agent).json())
    writer = leases.try_acquire(volume.pk, "celery-3 job 77")
    pin = job.api.post(job.mount("pin/"), {"holder": "agent w1"}, format="json", **job.h)
    assert pin.status_code == 200, pin.content
    pin = pin.json()
    assert (pin["generation"], pin["token"], pin["volume_name"]) == (1, 0, "training-data")
    manifest = job.api.get(job.mount(f"manifest/?pin={pin['pin_id']}&generation=1"), **job.h)
    assert [e["path"] for e in manifest.json()["entries"]] == ["old.txt"]
    blob = job.api.get(job.mount(f"blobs/{sha(data)}?pin={pin['pin_id']}"), **job.h)
    assert b"".join(blob.streaming_content) == data
    other_generation = job.api.get(job.mount(f"manifest/?pin={pin['pin_id']}&generation=2"), **job.h)
    assert other_generation.status_code == 409 and "holds generation 1" in other_generation.json()["detail"]
    assert job.post("volumes/training-data/pin/renew/", {"pin": pin["pin_id"]}).json() == {"ok": True}
    assert job.put_blob(0, b"x").status_code == 403  # a pin never writes
    assert job.post("volumes/training-data/pin/release/", {"pin": pin["pin_id"]}).json() == {"released": True}
    assert not VolumePin.objects.exists() and leases.current_holder(volume.pk).holder == "celery-3 job 77"
    gone = job.post("volumes/training-data/pin/renew/", {"pin": pin["pin_id"]})
    assert gone.status_code == 409 and gone.json()["error"] == "lease_lost" and "pin again" in gone.json()["detail"]
    stale = job.api.get(job.mount(f"blobs/{sha(data)}?pin={pin['pin_id']}"), **job.h)
    assert stale.status_code == 409
    leases.release(writer)


def test_pin_endpoints_check_the_claim_and_refuse_bad_input_as_json(claimed, client_for, cast):
    pin = claimed.api.post(claimed.mount("pin/"), {"holder": "agent w1"}, format="json", **claimed.h).json()
    outsider = client_for("outsider").post(claimed.mount("pin/"), {"holder": "x"}, format="json", **claimed.h)
    assert outsider.status_code == 404
    forged = claimed.api.post(claimed.mount("pin/"), {"holder": "x"}, format="json", HTTP_X_JOB_KEY="forged")
    assert forged.status_code == 403 and forged.json()["error"] == "permission_denied"
    anonymous = client_for(None).post(claimed.mount("pin/"), {"holder": "x"}, format="json", **claimed.h)
    assert anonymous.status_code == 401
    missing = claimed.api.post(claimed.base + "volumes/other-volume/pin/", {"holder": "x"}, format="json",
                               **claimed.h)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    for body in ({}, {"pin": "1"}, {"pin": 0}):
        bad = claimed.post("volumes/training-data/pin/renew/", body)
        assert bad.status_code == 400 and "pin" in json.dumps(bad.json()), bad.content
    bad_query = claimed.api.get(claimed.mount("manifest/?pin=x&generation=1"), **claimed.h)
    assert bad_query.status_code == 400 and "?pin=N" in bad_query.json()["detail"]
    claimed.post("finish/", {"status": "success", "result": None, "error": ""})
    from volumes.models import VolumePin

    assert not VolumePin.objects.exists()  # finishing drops the job's pins
    released = claimed.post("volumes/training-data/pin/release/", {"pin": pin["pin_id"]})
    assert released.json() == {"released": False}


def test_an_agent_reads_the_stored_manifest_and_only_its_parts_under_its_lease(claimed, client_for, cast):
    from volumes.engine import manifest_store

    token = claimed.acquire().json()["token"]
    stored = claimed.api.get(claimed.mount(f"manifest/?token={token}&generation=1&stored=1"), **claimed.h)
    assert stored.status_code == 200, stored.content
    doc = stored.json()
    assert doc["format"] == manifest_store.FORMAT and doc["generation"] == 1 and doc["parts"]

    def parts(body, api=claimed.api, headers=claimed.h):
        return api.post(claimed.mount("manifest/parts/"), body, format="json", **headers)

    asked = {"token": token, "generation": 1, "digests": doc["parts"]}
    answer = parts(asked)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/octet-stream"
    got = manifest_store.unpack_parts(answer.content, len(doc["parts"]))
    assert [sha(part) for part in got] == doc["parts"] and b'"old.txt"' in b"".join(got)

    # Only that manifest's parts: not a blob's digest, nor anything under another name.
    blob = parts({**asked, "digests": [sha(b"old")]})
    assert blob.status_code == 404 and "is not a part of generation 1" in blob.json()["detail"]
    for digests in (["../../blobs/" + sha(b"old")], [sha(b"old").upper()], [], ["0" * 64] * 1001):
        assert parts({**asked, "digests": digests}).status_code == 400, digests
    assert parts({**asked, "generation": 0}).status_code == 400
    assert parts({**asked, "generation": 2}).status_code == 404  # no such generation
    assert parts({**asked, "token": token + 1}).json()["error"] == "lease_lost"
    assert parts(asked, headers={"HTTP_X_JOB_KEY": "forged"}).status_code == 403
    assert parts(asked, api=client_for("outsider")).status_code == 404
    assert parts(asked, api=client_for(None)).status_code == 401
    assert claimed.api.get(claimed.mount(f"manifest/?token={token + 1}&generation=1&stored=1"),
                           **claimed.h).json()["error"] == "lease_lost"
