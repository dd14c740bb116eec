"""An agent that holds another generation of a volume reads only the manifest parts it lacks from the server, as an
in-process worker reads only those from storage (tests/engine/test_manifest_store.py). The server is not trusted
with their bytes: each part is checked against its name."""
from __future__ import annotations

import shutil

import pytest

from tests.engine.helpers import commit, tree_listing
from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.exceptions import IntegrityError
from volumes.services import agent as agent_service
from volumes.services.jobs import job_submit

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "# volume: training-data data\ndef main():\n    return 1\n"


def _files(tree):
    """480 files: a manifest of several parts."""
    for folder in range(8):
        (tree / f"d{folder}").mkdir()
        for i in range(60):
            (tree / f"d{folder}" / f"f{i:03d}.txt").write_text("the same\n")


@pytest.fixture
def agent_remote(live_server, workspace, cast, volume):
    """An HttpRemote of a job an agent of the workspace admin claimed from the live server."""
    from rest_framework.authtoken.models import Token

    from volumes.agent import ApiClient, HttpRemote, claim

    job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    client = ApiClient(live_server.url, Token.objects.create(user=cast["admin"]).key, "acme")
    spec = claim(client, "agent-1")
    return HttpRemote(client, spec["id"], spec["job_key"])


@pytest.fixture
def served(monkeypatch):
    """What the server sent agents: "whole" for each whole manifest, the digests of each parts request."""
    sent = {"whole": 0, "parts": []}
    whole, parts = agent_service.agent_manifest, agent_service.agent_manifest_parts

    def counted_whole(*args, **kwargs):
        sent["whole"] += 1
        return whole(*args, **kwargs)

    def counted_parts(job, name, token, generation, digests, pin_id=None):
        sent["parts"].append(list(digests))
        return parts(job, name, token, generation, digests, pin_id=pin_id)

    monkeypatch.setattr(agent_service, "agent_manifest", counted_whole)
    monkeypatch.setattr(agent_service, "agent_manifest_parts", counted_parts)
    return sent


def _agent_pull(remote, volume, cache_root, like_tree=None):
    """The agent's pull into `cache_root`; `like_tree`: files to put there first, so that its first pull finds
    them instead of downloading 480 files one request each (the manifest is what these tests are about)."""
    lease = remote.acquire(volume.workspace_id, volume.name, "agent-1", wait=5)
    try:
        cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        if like_tree is not None:
            cached.prepare()
            shutil.copytree(like_tree, cached.tree, symlinks=True, dirs_exist_ok=True)
        return sync.pull(remote, lease, cached)[0], cached
    finally:
        remote.release(lease)


def _writer_tree(volume, tmp_path):
    return WorkerCache(tmp_path / "writer", 10**12).volume(volume.workspace_id, volume.name).tree


def test_an_agent_fetches_only_the_parts_another_workers_commit_wrote(agent_remote, volume, served, tmp_path):
    commit(volume, tmp_path / "writer", _files)
    first, cached = _agent_pull(agent_remote, volume, tmp_path / "agent", _writer_tree(volume, tmp_path))
    assert served["whole"] == 1  # an empty cache has nothing to stand in for any part
    leaves = len(first.runs or ())

    commit(volume, tmp_path / "writer", lambda tree: (tree / "d3" / "f007.txt").write_text("changed elsewhere\n"))
    served.update(whole=0, parts=[])
    second, cached = _agent_pull(agent_remote, volume, tmp_path / "agent")
    assert served["whole"] == 0, "the whole manifest was sent again"
    fetched = [digest for request in served["parts"] for digest in request]
    assert leaves >= 6 and 1 <= len(fetched) <= 2, (leaves, served["parts"])  # the changed leaf (and an index)
    assert second.entries["d3/f007.txt"].size == len("changed elsewhere\n")
    assert tree_listing(cached.tree) == tree_listing(_writer_tree(volume, tmp_path))


def test_a_part_the_server_damaged_fails_the_agents_pull_before_it_changes_the_tree(
        agent_remote, volume, monkeypatch, tmp_path):
    commit(volume, tmp_path / "writer", _files)
    _, cached = _agent_pull(agent_remote, volume, tmp_path / "agent", _writer_tree(volume, tmp_path))
    before = tree_listing(cached.tree)
    commit(volume, tmp_path / "writer", lambda tree: (tree / "d3" / "f007.txt").write_text("changed elsewhere\n"))
    parts = agent_service.agent_manifest_parts

    def lying(*args, **kwargs):  # the same lengths, one entry's size changed
        return parts(*args, **kwargs).replace(b'"size":18', b'"size":19')

    monkeypatch.setattr(agent_service, "agent_manifest_parts", lying)
    with pytest.raises(IntegrityError, match="is damaged"):
        _agent_pull(agent_remote, volume, tmp_path / "agent")
    assert tree_listing(cached.tree) == before


def test_runs_the_server_lied_about_are_not_taken_from_the_agents_copy(agent_remote, volume, served, monkeypatch,
                                                                       tmp_path):
    commit(volume, tmp_path / "writer", _files)
    whole = agent_service.agent_manifest

    def lying(*args, **kwargs):  # each run named with the next one's digest
        manifest = whole(*args, **kwargs)
        digests = [run[3] for run in manifest.runs]
        manifest.runs = [(*run[:3], digests[(i + 1) % len(digests)]) for i, run in enumerate(manifest.runs)]
        return manifest

    monkeypatch.setattr(agent_service, "agent_manifest", lying)
    first, _ = _agent_pull(agent_remote, volume, tmp_path / "agent", _writer_tree(volume, tmp_path))
    commit(volume, tmp_path / "writer", lambda tree: (tree / "d3" / "f007.txt").write_text("changed elsewhere\n"))
    served.update(whole=0, parts=[])
    _, cached = _agent_pull(agent_remote, volume, tmp_path / "agent")
    fetched = [digest for request in served["parts"] for digest in request]
    assert len(fetched) >= len(first.runs)  # none of the copy's runs proved itself: every leaf fetched
    assert tree_listing(cached.tree) == tree_listing(_writer_tree(volume, tmp_path))
