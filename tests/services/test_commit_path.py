"""One commit path: a job's push, an agent's commit, a file edit and a restore are refused the same way,
word for word, for a stale fencing token and for a change over the volume's size cap (engine/commits.py)."""
from __future__ import annotations

import hashlib
import io

import pytest
from django.db.models import F

from tests.engine.helpers import commit
from volumes.engine import leases
from volumes.engine.manifest import FILE, Entry, Manifest
from volumes.engine.remote import DirectRemote
from volumes.exceptions import LeaseLost, LimitExceeded
from volumes.models import Volume, VolumeCommit
from volumes.services import agent, files
from volumes.services.jobs import job_submit
from volumes.services.volumes import volume_set_quota

pytestmark = pytest.mark.django_db(transaction=True)

DATA = b"x" * 5000
STALE = "the lease on volume 'training-data' was lost; nothing was committed"
OVER_CAP = (
    "volume 'training-data' would be 5,000 bytes, over its limit of 1,000 bytes. Nothing was committed. "
    "Delete files, or raise the volume's limit (its owner or an admin: Size limit on the volume's page, "
    "or `python manage.py volume quota training-data SIZE`)."
)


class Thief:
    """Takes the volume's lease over (after it expired) right after the writer's next blob check: the
    writer's token is stale by the time it commits."""

    def __init__(self) -> None:
        self.armed = False

    def take_over(self, volume_id: int) -> None:
        Volume.objects.filter(pk=volume_id).update(lease_expires_at=F("lease_acquired_at"))
        assert leases.try_acquire(volume_id, "thief") is not None


@pytest.fixture
def thief(monkeypatch):
    thief, real = Thief(), DirectRemote.missing_blobs

    def missing_blobs(self, lease, hashes, stored=None):
        missing = real(self, lease, hashes, stored)
        if thief.armed:
            thief.armed = False
            thief.take_over(lease.volume_id)
        return missing

    monkeypatch.setattr(DirectRemote, "missing_blobs", missing_blobs)
    return thief


def worker_push(volume, user, tmp_path, thief):
    thief.armed = True
    commit(volume, tmp_path / "cache", lambda tree: (tree / "big.bin").write_bytes(DATA))


def agent_commit(volume, user, tmp_path, thief):
    job_submit(volume.workspace, user, "python", "# volume: training-data data\ndef main():\n    return 1\n",
               enqueue=False)
    job = agent.agent_claim_next(volume.workspace, user, "w1").job
    lease = agent.agent_acquire(job, volume.name, "agent w1", wait=0)
    digest = hashlib.sha256(DATA).hexdigest()
    agent.agent_blob_put(job, volume.name, lease.token, digest, io.BytesIO(DATA))
    manifest = Manifest({"big.bin": Entry("big.bin", FILE, len(DATA), digest, 0o644)})
    thief.armed = True
    agent.agent_commit(job, volume.name, lease.token, lease.generation, manifest.to_json())


def file_edit(volume, user, tmp_path, thief):
    thief.armed = True
    files.file_put(volume, "big.bin", io.BytesIO(DATA), user=user)


def restore(volume, user, tmp_path, thief):
    thief.armed = True
    files.generation_restore(volume, 1, user=user)


WRITERS = [worker_push, agent_commit, file_edit, restore]


@pytest.fixture
def history(volume, cast):
    """Generation 1 holds big.bin (what a restore brings back), generation 2 is empty."""
    files.file_put(volume, "big.bin", io.BytesIO(DATA), user=cast["owner"])
    files.file_delete(Volume.objects.get(pk=volume.pk), "big.bin", user=cast["owner"])
    return Volume.objects.get(pk=volume.pk)


def _unchanged(volume):
    now = Volume.objects.get(pk=volume.pk)
    return (now.generation, now.manifest_key, VolumeCommit.objects.filter(volume=volume).count()) == (
        volume.generation, volume.manifest_key, 2)


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
def test_every_writer_is_refused_a_stale_token_in_the_same_words(write, history, cast, tmp_path, thief):
    with pytest.raises(LeaseLost) as refused:
        write(history, cast["admin"], tmp_path, thief)
    assert not thief.armed, "the writer never checked its blobs"
    assert str(refused.value) == STALE
    assert _unchanged(history)
    assert leases.current_holder(history.pk).holder == "thief"


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
def test_every_writer_is_refused_a_change_over_the_size_cap_in_the_same_words(write, history, cast, tmp_path):
    volume = volume_set_quota(history, 1000)
    with pytest.raises(LimitExceeded) as refused:
        write(volume, cast["admin"], tmp_path, Thief())  # nobody takes the lease over here
    assert str(refused.value) == OVER_CAP
    assert _unchanged(history)


OVER_FILE_LIMIT = ("is over the limit of 1,000 bytes per file; make it smaller or split it "
                   "(the enterprise edition lifts this limit). Nothing was committed.")


@pytest.mark.parametrize("write, subject", [(worker_push, "file 'big.bin'"), (file_edit, "file 'big.bin'"),
                                            (agent_commit, "a file")], ids=lambda w: getattr(w, "__name__", w))
def test_every_writer_is_refused_a_file_over_the_per_file_limit_in_the_same_words(write, subject, history, cast,
                                                                                  tmp_path, settings):
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1000}
    with pytest.raises(LimitExceeded) as refused:
        write(history, cast["admin"], tmp_path, Thief())
    assert str(refused.value) == f"{subject} {OVER_FILE_LIMIT}"
    assert _unchanged(history)


def test_an_agent_manifest_naming_a_file_over_the_per_file_limit_is_refused_in_the_same_words(volume, cast,
                                                                                            settings):
    job_submit(volume.workspace, cast["admin"], "python", "# volume: training-data data\ndef main():\n    return 1\n",
               enqueue=False)
    job = agent.agent_claim_next(volume.workspace, cast["admin"], "w1").job
    lease = agent.agent_acquire(job, volume.name, "agent w1", wait=0)
    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1000}
    manifest = Manifest({"big.bin": Entry("big.bin", FILE, len(DATA), hashlib.sha256(DATA).hexdigest(), 0o644)})
    with pytest.raises(LimitExceeded) as refused:
        agent.agent_commit(job, volume.name, lease.token, lease.generation, manifest.to_json())
    assert str(refused.value) == f"file 'big.bin' {OVER_FILE_LIMIT}"


def test_sizes_from_a_mebibyte_on_are_also_given_in_units_a_person_reads():
    from volumes.engine.commits import file_over_limit, size_text

    assert size_text(1000) == "1,000 bytes"
    assert str(file_over_limit(52_428_800, "a.bin")).startswith(
        "file 'a.bin' is over the limit of 52,428,800 bytes (50.0 MB) per file;")
