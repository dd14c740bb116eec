"""Stale rights: a finished job's key does nothing, finishing releases leases, removed members' jobs
never run, and agent rights are a per-workspace role limited to what the agent's own user may read."""
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from volumes.engine import leases
from volumes.models import Job, Membership, Volume
from volumes.permissions import set_share
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit, reap_lost_jobs
from volumes.services.workspaces import agent_role_grant, agent_role_revoke, membership_remove, workspace_ensure

from .helpers import seed
from .test_agent_endpoints import SCRIPT, Job_, claim, file_entry, sha

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(client_for):
    return client_for("admin")


@pytest.fixture
def claimed(agent, volume, cast):
    seed(volume, {"old.txt": b"old"}, user=cast["owner"])
    job_submit(volume.workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    return Job_(agent, claim(agent).json())


def test_a_finished_jobs_key_changes_nothing_and_reads_nothing(claimed, volume):
    token = claimed.acquire().json()["token"]
    assert claimed.put_blob(token, b"early").status_code == 201
    assert claimed.post("finish/", {"status": "success", "result": 1}).status_code == 200
    before = Job.objects.get(pk=claimed.spec["id"])
    answers = {
        "log": claimed.post("log/", {"text": "late line\n"}),
        "status": claimed.post("status/", {"status": "running"}),
        "script": claimed.post("script/", {"event": "finished"}),
        "figures": claimed.post("volumes/training-data/figures/", {"figures": {"files_pulled": 99}}),
        "second finish": claimed.post("finish/", {"status": "failure", "error": "again"}),
        "heartbeat": claimed.post("heartbeat/"),
        "acquire": claimed.acquire(),
        "renew": claimed.post("volumes/training-data/lease/renew/", {"token": token}),
        "manifest": claimed.api.get(claimed.mount(f"manifest/?token={token}&generation=1"), **claimed.h),
        "blob": claimed.api.get(claimed.mount(f"blobs/{sha(b'old')}?token={token}"), **claimed.h),
        "missing": claimed.api.post(claimed.mount("blobs/missing/"), {"token": token, "hashes": [sha(b"x")]},
                                    format="json", **claimed.h),
        "put blob": claimed.put_blob(token, b"late"),
        "commit": claimed.commit(token, 1, [file_entry("old.txt", b"old")]),
    }
    wrong = {k: (r.status_code, getattr(r, "content", b"")[:200]) for k, r in answers.items()
             if r.status_code != 409 or r.json()["error"] != "job_finished"}
    assert not wrong, wrong
    after = Job.objects.get(pk=claimed.spec["id"])
    assert (after.log, after.status, after.result, after.error, after.finished_at, after.script_finished_at,
            after.heartbeat_at) == (before.log, before.status, before.result, before.error, before.finished_at,
                                    before.script_finished_at, before.heartbeat_at)
    assert after.mounts.get().files_pulled == before.mounts.get().files_pulled
    assert Volume.objects.get(pk=volume.pk).generation == 1


def test_finishing_releases_the_jobs_leases(claimed, volume):
    claimed.acquire()
    assert leases.current_holder(volume.pk) is not None
    assert claimed.post("finish/", {"status": "failure", "error": "boom"}).status_code == 200
    assert leases.current_holder(volume.pk) is None
    # The next job gets the volume at once.
    assert leases.try_acquire(volume.pk, "next") is not None


def test_a_reaped_job_releases_its_leases(claimed, volume):
    claimed.acquire()
    Job.objects.filter(pk=claimed.spec["id"]).update(heartbeat_at="2000-01-01T00:00Z")
    assert reap_lost_jobs(grace_seconds=1) == 1
    assert leases.current_holder(volume.pk) is None
    assert claimed.post("heartbeat/").status_code == 409


def test_a_removed_members_queued_jobs_are_cancelled(workspace, cast):
    queued = job_submit(workspace, cast["member"], "python", "def main():\n    return 1\n", enqueue=False)
    other = job_submit(workspace, cast["writer"], "python", "def main():\n    return 1\n", enqueue=False)
    membership_remove(workspace, cast["member"])
    queued.refresh_from_db(), other.refresh_from_db()
    assert queued.status == "cancelled" and "no longer a member" in queued.error
    assert other.status == "queued"


def test_membership_is_checked_when_a_job_is_claimed(workspace, cast, agent):
    # Rows removed without the service (a bulk update elsewhere): the claim still checks.
    script = "def main():\n    return 1\n"
    in_process = job_submit(workspace, cast["member"], "python", script, enqueue=False)
    for_agent = job_submit(workspace, cast["member"], "python", script, enqueue=False)
    Membership.objects.filter(user=cast["member"]).update(workspace=workspace_ensure("elsewhere"))
    job = job_run(in_process.pk)
    assert job.status == "failure" and "not a member" in job.error
    assert claim(agent).status_code == 204  # failed at claim, nothing handed out
    for_agent.refresh_from_db()
    assert for_agent.status == "failure" and "not a member" in for_agent.error


def test_agent_rights_are_a_per_workspace_role_not_a_global_group(client_for, workspace, cast):
    job_submit(workspace, cast["owner"], "python", "def main(): pass\n", enqueue=False)
    Group.objects.create(name="agents").user_set.add(cast["writer"])
    refused = claim(client_for("writer"))
    assert refused.status_code == 403 and "agent_role" in refused.json()["detail"]
    other = workspace_ensure("other", members=["writer"])
    agent_role_grant(other, cast["writer"])
    assert claim(client_for("writer")).status_code == 403  # a role in another workspace gives nothing here
    agent_role_grant(workspace, cast["writer"])
    assert claim(client_for("writer")).status_code == 200
    agent_role_revoke(workspace, cast["writer"])
    assert claim(client_for("writer")).status_code == 403
    rows = {r["id"]: r["can_run_agents"] for r in client_for("writer").get("/api/workspaces/").json()}
    assert rows == {"acme": False, "other": True}


def test_the_agent_role_command_grants_lists_and_revokes(workspace, cast, capsys):
    call_command("agent_role", "acme", "writer")
    assert Membership.objects.get(workspace=workspace, user=cast["writer"]).runs_agents
    call_command("agent_role", "acme", "--list")
    assert "writer" in capsys.readouterr().out
    call_command("agent_role", "acme", "writer", "--revoke")
    assert not Membership.objects.get(workspace=workspace, user=cast["writer"]).runs_agents


def test_an_agent_runs_only_jobs_whose_volumes_its_own_user_may_use_as_the_job_does(client_for, volume, cast):
    seed(volume, {"secret.txt": b"secret"}, user=cast["owner"])
    set_share(volume, cast["reader"], "read")  # shared: the writer (no share) may not read it
    agent_role_grant(volume.workspace, cast["writer"])
    agent_role_grant(volume.workspace, cast["reader"])
    job = job_submit(volume.workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    assert claim(client_for("writer")).status_code == 204  # not handed out: the agent's user cannot read it
    assert claim(client_for("reader")).status_code == 204  # read-only, but the job would write
    job.refresh_from_db()
    assert job.status == "queued"
    set_share(volume, cast["writer"], "write")
    spec = claim(client_for("writer")).json()
    assert spec["id"] == job.pk and spec["mounts"][0]["read_only"] is False
    # A read-only job of the reader runs on the reader's agent.
    ro = job_submit(volume.workspace, cast["reader"], "python", SCRIPT, enqueue=False)
    spec = claim(client_for("reader")).json()
    assert spec["id"] == ro.pk and spec["mounts"][0]["read_only"] is True


def test_a_share_removed_between_check_and_claim_fails_the_job_clearly(client_for, volume, cast, monkeypatch):
    from volumes.services import agent as agent_services

    agent_role_grant(volume.workspace, cast["writer"])
    job = job_submit(volume.workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    monkeypatch.setattr(agent_services, "agent_may_run", lambda job, user: True)
    set_share(volume, cast["reader"], "read")
    assert claim(client_for("writer")).status_code == 204
    job.refresh_from_db()
    assert job.status == "failure" and "agent" in job.error and "writer" in job.error
