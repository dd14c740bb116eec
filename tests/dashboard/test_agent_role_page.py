"""Settings > Members: admins give or take the agent role of one member, for this workspace only."""
import pytest

from volumes.models import Membership
from volumes.permissions import can_run_agents

pytestmark = pytest.mark.django_db


def test_an_admin_allows_and_revokes_a_members_agent_role(as_user, workspace, cast):
    page = as_user("admin").get("/w/acme/settings/members/")
    assert page.status_code == 200 and b"Agent workers" in page.content
    url = f"/w/acme/settings/members/{cast['writer'].pk}/agent/"
    assert as_user("admin").post(url, {"agent": "on"}).status_code == 302
    assert can_run_agents(cast["writer"], workspace)
    assert b"may run" in as_user("admin").get("/w/acme/settings/members/").content
    as_user("admin").post(url, {})
    assert not Membership.objects.get(workspace=workspace, user=cast["writer"]).runs_agents
    assert not can_run_agents(cast["writer"], workspace)


def test_members_cannot_give_themselves_the_agent_role(as_user, workspace, cast):
    response = as_user("writer").post(f"/w/acme/settings/members/{cast['writer'].pk}/agent/", {"agent": "on"})
    assert response.status_code == 403
    assert not can_run_agents(cast["writer"], workspace)
    assert as_user("outsider").post(f"/w/acme/settings/members/{cast['writer'].pk}/agent/",
                                    {"agent": "on"}).status_code == 404
