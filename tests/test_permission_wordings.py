"""One wording per refusal (issue 14): every surface that refuses for the same reason says it in the same words,
because they all ask volumes.permissions, which words each refusal once."""
import pytest
from django.test import Client

from volumes.exceptions import VolumesError
from volumes.models import Job
from volumes.permissions import set_share, volume_for
from volumes.services import accounts, agent, jobs, shares, workspaces
from volumes.services.volumes import volume_delete

pytestmark = pytest.mark.django_db

SCRIPT = "# volume: training-data data\ndef main():\n    return 1\n"


def refusal(call) -> str:
    with pytest.raises(VolumesError) as info:
        call()
    return str(info.value)


def claimed_error(workspace, user, job: Job) -> str:
    """What a job fails with when an agent (of `user`) claims it."""
    assert agent.agent_claim_next(workspace, user, "w1") is None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILURE
    return job.error


def test_not_a_member_is_worded_once(workspace, volume, cast):
    outsider = cast["outsider"]
    job = jobs.job_submit(workspace, outsider, "python", SCRIPT, enqueue=False)
    said = {
        "members: set role": refusal(lambda: accounts.member_set_role(workspace, outsider, "member")),
        "members: remove": refusal(lambda: accounts.member_remove(workspace, outsider)),
        "shares": refusal(lambda: shares.share_set(volume, outsider, "read")),
        "workspaces: agent role": refusal(lambda: workspaces.agent_role_grant(workspace, outsider)),
        "jobs": refusal(lambda: jobs.job_prepare(job)),
    }
    job.status = Job.Status.QUEUED
    job.save()
    said["agent claim"] = claimed_error(workspace, cast["admin"], job)
    assert set(said.values()) == {"user 'outsider' is not a member of workspace 'acme'"}, said
    # The dashboard names a user it found by id only by that id: a non-member's name is not an admin's to learn.
    client = Client()
    client.force_login(cast["admin"])
    response = client.post(f"/w/acme/settings/members/{outsider.pk}/role/", {"role": "member"})
    assert response.status_code == 404
    assert f"user {outsider.pk} is not a member of workspace &#x27;acme&#x27;" in response.content.decode().lower()


def test_no_share_on_a_volume_is_worded_once(workspace, volume, cast):
    set_share(volume, cast["reader"], "read")  # shared: the member (no share) may not see it
    job = jobs.job_submit(workspace, cast["member"], "python", SCRIPT, enqueue=False)
    api = refusal(lambda: volume_for(cast["member"], "acme", "training-data"))
    assert api == ("user 'member' has no share on volume 'training-data'; ask its owner or a workspace admin to "
                   "share it")
    assert refusal(lambda: jobs.job_prepare(job)) == f"line 1: {api}"
    job.status = Job.Status.QUEUED
    job.save()
    assert claimed_error(workspace, cast["admin"], job) == f"line 1: {api}"


def test_the_agent_role_refusal_is_worded_once(workspace, cast):
    said = {refusal(lambda: agent.agent_claim_next(workspace, cast["writer"], "w1")),
            refusal(lambda: agent.agent_job(workspace, cast["writer"], 1, ""))}
    assert len(said) == 1 and "agent role" in said.pop()


def test_the_trash_refusal_is_worded_once(workspace, volume, cast):
    from volumes.services.volumes import trashed_volume_for

    volume_delete(volume, user=cast["owner"])
    said = refusal(lambda: trashed_volume_for(cast["writer"], "acme", "training-data"))
    assert said == ("only the owner of volume 'training-data', who deleted it, and admins can restore it or delete "
                    "it for good")


def test_a_missing_volume_is_worded_once(workspace, cast):
    from volumes.engine.remote import DirectRemote

    said = {
        "dashboard and API": refusal(lambda: volume_for(cast["owner"], "acme", "no-such")),
        "a worker's lease": refusal(lambda: DirectRemote().acquire("acme", "no-such", "w1 job 1", wait=0)),
        "a worker's pin": refusal(lambda: DirectRemote().pin("acme", "no-such", "w1 job 1")),
    }
    assert set(said.values()) == {"volume 'no-such' not found in workspace 'acme'"}, said
