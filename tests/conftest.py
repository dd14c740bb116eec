"""The fixed cast every permission test reads the same way, and a workspace with filesystem storage."""
from __future__ import annotations

import pytest

pytest_plugins = ["tests.servers"]


@pytest.fixture
def storage_root(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    return root


@pytest.fixture
def workspace(db, storage_root):
    from volumes.services.workspaces import workspace_ensure

    return workspace_ensure(
        "acme", name="Acme", admins=["admin"], members=["owner", "writer", "reader", "member", "groupie"],
        storage_url=f"file://{storage_root}",
    )


@pytest.fixture
def cast(workspace):
    """admin, owner, writer, reader, member (no share), outsider (not in the workspace)."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    users = {name: User.objects.get(username=name) for name in ["admin", "owner", "writer", "reader", "member", "groupie"]}
    users["outsider"] = User.objects.create(username="outsider")
    return users


@pytest.fixture
def team_group(cast):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="team")
    cast["groupie"].groups.add(group)
    return group


@pytest.fixture
def volume(workspace, cast):
    from volumes.services.volumes import volume_create

    return volume_create(workspace, "training-data", owner=cast["owner"])


@pytest.fixture
def cache_root(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    return root


def pytest_sessionstart(session):
    from tests.reliability import report

    if not hasattr(session.config, "workerinput"):  # the xdist controller or a plain run
        report.reset()


def pytest_terminal_summary(terminalreporter):
    from tests.reliability import report

    lines = report.render()
    if lines:
        terminalreporter.section("reliability report card")
        for line in lines:
            terminalreporter.write_line(line)
