"""The whole permission matrix through the API: every role x every action, read as one table.

Roles set up the shares of volume `training-data` (owner: "owner"); actions go through the
REST API with the role's token, except "run", which submits a job through the API and then
asks `jobs.job_prepare` which mount mode the job would get (rw, ro, or denied).
"""
import io

import pytest

from volumes.exceptions import PermissionDenied
from volumes.models import Job
from volumes.permissions import set_share
from volumes.services.files import file_put
from volumes.services.jobs import job_prepare

V = "/api/w/acme/volumes/training-data/"


def _shared_with_reader(volume, cast, team):
    set_share(volume, cast["reader"], "read")


ROLES = {
    # role: (user, share setup)
    "admin": ("admin", _shared_with_reader),
    "owner": ("owner", _shared_with_reader),
    "write share via user": ("writer", lambda v, c, t: set_share(v, c["writer"], "write")),
    "write share via group": ("groupie", lambda v, c, t: set_share(v, t, "write")),
    "read share via user": ("reader", lambda v, c, t: set_share(v, c["reader"], "read")),
    "read share via group": ("groupie", lambda v, c, t: set_share(v, t, "read")),
    "read via user plus write via group": (
        "groupie", lambda v, c, t: (set_share(v, c["groupie"], "read"), set_share(v, t, "write"))),
    "member of an unshared volume": ("member", lambda v, c, t: None),
    "member without a share on a shared volume": ("member", _shared_with_reader),
    "non-member": ("outsider", _shared_with_reader),
    "anonymous": (None, _shared_with_reader),
}

ACTIONS = ["list", "see", "read files", "run job", "upload", "delete file", "share", "delete volume"]
FULL = ("listed", 200, 200, "rw", 201, 200, 200, 204)
WRITER = ("listed", 200, 200, "rw", 201, 200, 403, 204)
READER = ("listed", 200, 200, "ro", 403, 403, 403, 403)
EXPECTED = {
    "admin": FULL,
    "owner": FULL,
    "write share via user": WRITER,
    "write share via group": WRITER,
    "read share via user": READER,
    "read share via group": READER,
    "read via user plus write via group": WRITER,
    "member of an unshared volume": WRITER,
    "member without a share on a shared volume": ("hidden", 403, 403, "denied", 403, 403, 403, 403),
    "non-member": (404,) * 8,
    "anonymous": (401,) * 8,
}


@pytest.fixture
def api_as(cast, monkeypatch):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from volumes import tasks

    monkeypatch.setattr(tasks.run_job, "delay", lambda *a, **k: None)

    def make(username):
        client = APIClient()
        if username:
            token, _ = Token.objects.get_or_create(user=cast[username])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def perform(action: str, api):
    """Do one action; the outcome is the HTTP status, or a word where a status says too little."""
    if action == "list":
        response = api.get("/api/w/acme/volumes/")
        if response.status_code != 200:
            return response.status_code
        return "listed" if "training-data" in [v["name"] for v in response.json()] else "hidden"
    if action == "see":
        return api.get(V).status_code
    if action == "read files":
        return api.get(V + "files/f.txt").status_code
    if action == "run job":
        response = api.post("/api/w/acme/jobs/", {"language": "python",
                                                  "content": "# volume: training-data data\ndef main(): pass\n"},
                            format="json")
        if response.status_code != 201:
            return response.status_code
        try:
            plans, _ = job_prepare(Job.objects.get(pk=response.json()["id"]))
        except PermissionDenied:
            return "denied"
        return "ro" if plans[0].read_only else "rw"
    if action == "upload":
        return api.generic("PUT", V + "files/new.txt", b"new", content_type="application/octet-stream").status_code
    if action == "delete file":
        return api.delete(V + "files/f.txt").status_code
    if action == "share":
        return api.post(V + "shares/", {"user": "member", "access": "read"}, format="json").status_code
    if action == "delete volume":
        return api.delete(V).status_code
    raise AssertionError(action)


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(role, action, api_as, volume, cast, team_group):
    user, setup = ROLES[role]
    file_put(volume, "f.txt", io.BytesIO(b"file"), user=cast["owner"])
    setup(volume, cast, team_group)
    outcome = perform(action, api_as(user))
    assert outcome == EXPECTED[role][ACTIONS.index(action)], f"{role} / {action}"


def test_the_table_covers_every_role_and_action():
    assert set(EXPECTED) == set(ROLES) and all(len(row) == len(ACTIONS) for row in EXPECTED.values())
