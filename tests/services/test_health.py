"""`volume fsck` on a volume an old version left damaged: it says what is wrong and repairs it."""
from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db.models.functions import Now

from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.exceptions import IntegrityError
from volumes.models import Volume, VolumeCommit
from volumes.services import files, health
from volumes.storage.keys import manifest_key, volume_prefix

pytestmark = pytest.mark.django_db


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damage(volume, storage_root, rows):
    """Commit `rows` added to the current manifest straight into storage and the database, as an older
    version without validation would have left them."""
    volume.refresh_from_db()
    from volumes.engine import manifest_store
    from volumes.storage.factory import store_for_storage

    doc = json.loads(manifest_store.read_bytes(store_for_storage(volume.storage), volume.manifest_key))
    doc["entries"] += rows
    doc["generation"] = volume.generation + 1
    key = manifest_key(volume_prefix(volume.workspace_id, volume.name), f"{volume.generation + 1:08d}-old.json")
    (storage_root / key).parent.mkdir(parents=True, exist_ok=True)
    (storage_root / key).write_bytes(json.dumps(doc).encode())
    VolumeCommit.objects.create(volume=volume, generation=volume.generation + 1, parent=volume.generation,
                                manifest_key=key, lease_token=0, created_at=Now(), message="old version")
    Volume.objects.filter(pk=volume.pk).update(generation=volume.generation + 1, manifest_key=key)
    files._load_manifest.cache_clear()
    volume.refresh_from_db()


def row(path, data=b"", type="file", size=None):
    return {"path": path, "type": type, "size": len(data) if size is None else size,
            "hash": sha(data) if type == "file" else "", "mode": 0o644 if type == "file" else 0o755,
            "mtime_ns": 0, "target": "", "gen": 2}


@pytest.fixture
def damaged(volume, cast, storage_root):
    files.file_put(volume, "good/keep.txt", io.BytesIO(b"keep me"), user=cast["owner"])
    files.file_put(volume, "also.txt", io.BytesIO(b"also"), user=cast["owner"])
    prefix = storage_root / volume_prefix(volume.workspace_id, volume.name)
    # A blob whose bytes changed in storage (same size).
    files.file_put(volume, "flipped.txt", io.BytesIO(b"flipped"), user=cast["owner"])
    (prefix / "blobs" / sha(b"flipped")).write_bytes(b"FLIPPED")
    damage(volume, storage_root, [
        row("report\\2024.csv", b"keep me"),  # a name no reader accepts
        row("good/tab\there.txt", b"keep me"),
        row("ghost.txt", b"never uploaded"),  # its blob is missing
        row("liar.txt", b"also", size=99),  # wrong size
        row("orphan/inside.txt", b"also"),  # its folder row is missing: added back, not dropped
    ])
    return volume


def pull(volume, root):
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "reader")
    try:
        return sync.pull(remote, lease, WorkerCache(root, 10**12).volume(volume.workspace_id, volume.name))[0]
    finally:
        remote.release(lease)


def test_a_damaged_volume_cannot_be_pulled_and_the_error_says_how_to_repair_it(damaged, tmp_path):
    with pytest.raises(IntegrityError) as info:
        pull(damaged, tmp_path / "c")
    assert "fsck" in str(info.value) and "Repair" in str(info.value)


def test_fsck_names_every_problem_of_the_current_generation(damaged):
    found = health.volume_check(damaged)
    assert not found.ok
    by_path = {p.path: p.what for p in found.problems}
    assert by_path == {"report\\2024.csv": "entry", "good/tab\there.txt": "entry", "ghost.txt": "missing",
                       "liar.txt": "size", "flipped.txt": "hash"}, found.problems
    quick = health.volume_check(damaged, deep=False)
    assert "flipped.txt" not in {p.path for p in quick.problems}


def test_repair_keeps_everything_readable_in_a_new_generation(damaged, cast, tmp_path):
    before = damaged.generation
    found, generation = health.volume_repair(damaged, user=cast["owner"])
    assert generation == before + 1 and len(found.problems) == 5
    damaged.refresh_from_db()
    assert health.volume_check(damaged).ok
    manifest = pull(damaged, tmp_path / "c")
    assert sorted(manifest.entries) == ["also.txt", "good", "good/keep.txt", "orphan", "orphan/inside.txt"]
    tree = WorkerCache(tmp_path / "c", 10**12).volume(damaged.workspace_id, damaged.name).tree
    assert (tree / "good" / "keep.txt").read_bytes() == b"keep me"
    assert (tree / "orphan" / "inside.txt").read_bytes() == b"also"
    assert VolumeCommit.objects.get(volume=damaged, generation=generation).message.startswith("repair: dropped")
    # The damaged generation stays in the history; a second repair has nothing to do.
    assert health.volume_repair(damaged, user=cast["owner"])[1] is None


def test_the_volume_command_checks_and_repairs(damaged):
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("volume", "-w", "acme", "-u", "owner", "fsck", "training-data", stdout=out,
                     stderr=io.StringIO())
    text = out.getvalue()
    assert "has 5 problems" in text and "report\\\\2024.csv" in text and "--repair" in text
    out = io.StringIO()
    call_command("volume", "-w", "acme", "-u", "owner", "fsck", "training-data", "--repair", stdout=out,
                 stderr=io.StringIO())
    assert "repaired: generation" in out.getvalue()
    out = io.StringIO()
    call_command("volume", "-w", "acme", "-u", "owner", "fsck", "training-data", stdout=out, stderr=io.StringIO())
    assert "is healthy" in out.getvalue()


def test_a_reader_may_check_but_not_repair(damaged, cast):
    from volumes.permissions import set_share

    set_share(damaged, cast["reader"], "read")
    with pytest.raises(CommandError):
        call_command("volume", "-w", "acme", "-u", "reader", "fsck", "training-data", "--repair",
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert Volume.objects.get(pk=damaged.pk).generation == damaged.generation


def test_the_garbage_collector_works_on_a_damaged_volume_and_keeps_what_it_references(damaged, cast, tmp_path):
    from volumes.services.gc import gc_volume

    removed = gc_volume(damaged)  # used to fail on the unsafe path like every other reader
    assert removed is not None and "stopped" not in removed
    health.volume_repair(damaged, user=cast["owner"])
    damaged.refresh_from_db()
    assert gc_volume(damaged) is not None
    manifest = pull(damaged, tmp_path / "c")
    assert "good/keep.txt" in manifest.entries  # its blob (shared with a dropped entry) is still there
