"""Sync reliability: crashes, storage faults, random kills with a concurrent reader, damaged caches
and GC racing pushes, on the four storage backends. Every check pulls the volume fresh and compares
the tree with the one generation of tests/reliability/generations.py it claims to be."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from tests.engine.helpers import ROOT, commit, worker_env
from tests.reliability import generations
from tests.reliability.report import figure, scale
from tests.servers import KINDS, S3_KEYS, S3_REGION, PrivateStorage, backend_config, create_bucket, free_port
from volumes.engine import leases, manifest_store, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.leases import Lease
from volumes.engine.remote import DirectRemote
from volumes.exceptions import BlobMissing, IntegrityError, StorageUnavailable
from volumes.models import ObjectStorage, Volume, VolumeCommit
from volumes.services.gc import gc_volume
from volumes.services.volumes import volume_create
from volumes.services.workspaces import workspace_ensure
from volumes.storage.factory import clear_store_cache, store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SUITE = "sync"
CRASH_POINTS = [
    "push.after_blob_upload:3",
    "push.after_manifest_write:1",
    "commit.inside_transaction:1",
    "push.after_commit:1",
    "pull.after_file:2",
]
RANDOM_KILL_KINDS = scale(("s3",), KINDS)  # CI: the network backend; every other suite runs on all four
card: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_card():
    yield
    if card["crash cases"]:
        figure(SUITE, "crash points x backends tested", card["crash cases"],
               target=f"{len(CRASH_POINTS) * len(KINDS)}", ok=card["crash cases"] == len(CRASH_POINTS) * len(KINDS))
    figure(SUITE, "whole-generation checks (fresh pulls)", card["whole checks"])
    figure(SUITE, "whole-generation violations", card["violations"], target="0", ok=card["violations"] == 0)
    figure(SUITE, "acknowledged commits lost", card["acks lost"], unit=f"of {card['acks']}", target="0",
           ok=card["acks lost"] == 0)
    figure(SUITE, "garbage left after GC", card["garbage"], unit="objects", target="0", ok=card["garbage"] == 0)
    figure(SUITE, "objects a kept generation needs, missing", card["missing"], target="0", ok=card["missing"] == 0)
    if card["reader pulls"]:
        figure(SUITE, "reader pulls checked during random kills", card["reader pulls"],
               unit=f"({card['kills']} kills)")
    if card["stop to error, worst"]:
        figure(SUITE, "push error after the storage stopped, worst backend", round(card["stop to error, worst"], 1),
               unit="s")
    if card["restarts ridden out"]:
        figure(SUITE, "pushes committed across a storage restart", card["restarts ridden out"], unit="backends")
    if card["gc runs"]:
        figure(SUITE, "GC runs racing pushes (refused while leased)", card["gc runs"],
               unit=f"({card['gc refused']} refused)")
    if card["paused gc cases"]:
        figure(SUITE, "GC paused past its TTL while a job reuses garbage (blobs lost)", card["paused gc lost"],
               unit=f"of {card['paused gc cases']} reused", target="0", ok=card["paused gc lost"] == 0)


@pytest.fixture(autouse=True)
def few_threads(settings):
    settings.VOLUMES = {**settings.VOLUMES, "TRANSFER_THREADS": 2}
    clear_store_cache()
    yield
    clear_store_cache()


# --- helpers --------------------------------------------------------------------------------


def make_volume(kind: str, config: dict, name: str = "sync-data") -> Volume:
    workspace = workspace_ensure("acme", name="Acme")
    storage = ObjectStorage.objects.create(workspace=workspace, name=f"{kind} store", kind=kind, config=config,
                                           is_primary=True)
    workspace.volume_storage = storage
    workspace.save(update_fields=["volume_storage"])
    return volume_create(workspace, name)


@pytest.fixture(params=KINDS)
def volume(request, tmp_path) -> Volume:
    """A new, empty volume in a fresh bucket of each kind of storage."""
    return make_volume(request.param, backend_config(request.param, request, tmp_path))


def free_lease(volume: Volume) -> None:
    """Expire the lease a killed process left (as its TTL would)."""
    Volume.objects.filter(pk=volume.pk).update(lease_expires_at=None)


def push_next(volume: Volume, cache_root: Path, remote: DirectRemote | None = None) -> int:
    """Check out, write the next generation, push and release, in this process; returns the generation."""
    remote = remote or DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "test", wait=30)
    try:
        cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        base, _ = sync.pull(remote, lease, cached)
        generations.write(cached.tree, lease.generation + 1)
        return sync.push(remote, lease, cached, base).committed_generation
    finally:
        remote.release(lease)


def check_whole(volume: Volume, cache_root: Path) -> int:
    """Pull the volume into a fresh cache: it must be exactly its current generation, with the size
    and file count of its manifest. Counts the check (and any violation) on the card."""
    free_lease(volume)
    volume.refresh_from_db()
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "checker", wait=30)
    try:
        cached = WorkerCache(cache_root / f"check-{time.monotonic_ns()}", 10**12).volume(
            volume.workspace_id, volume.name)
        manifest, _ = sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    files = generations.files_of(lease.generation) if lease.generation else {}
    whole = (
        generations.listing(cached.tree) == generations.expected(lease.generation)
        and manifest.generation == lease.generation
        and (volume.file_count, volume.size_bytes) == (manifest.file_count, manifest.size_bytes)
        and manifest.file_count == (len(files) + len(generations.LINKS) if files else 0)
        and manifest.size_bytes == sum(len(data) for data, _ in files.values())
    )
    card["whole checks"] += 1
    card["violations"] += not whole
    assert whole, f"the volume is not exactly generation {lease.generation}"
    return lease.generation


def incomplete_uploads(store, prefix: str) -> set[str]:
    """Leftovers of interrupted uploads that no listing shows."""
    if store.kind == "filesystem":
        top = Path(store.root, *(store.prefix + prefix).strip("/").split("/"))
        return {str(p) for p in top.rglob("*.volumes-tmp")} if top.exists() else set()
    if store.kind == "s3":
        answer = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix + prefix)
        return {f"multipart {u['Key']}" for u in answer.get("Uploads", ())}
    return set()


def storage_state(volume: Volume) -> tuple[set[str], set[str]]:
    """(garbage, missing): objects under the volume's prefix that no kept generation needs (and
    leftovers of interrupted uploads), and objects a kept generation needs that are gone."""
    store = store_for_storage(volume.storage)
    prefix = volume_prefix(volume.workspace_id, volume.name)
    present = set(store.list(prefix))
    needed: set[str] = set()
    for key in VolumeCommit.objects.filter(volume_id=volume.pk).values_list("manifest_key", flat=True):
        needed.add(key)
        try:
            needed |= {blob_key(prefix, h) for h in manifest_store.read(store, key).hashes()}
            needed |= manifest_store.part_keys(store, key)
        except BlobMissing:
            pass  # counted as missing below
    return (present - needed) | incomplete_uploads(store, prefix), needed - present


def collect_and_check(volume: Volume) -> dict:
    """Run GC: afterwards nothing is left that no kept generation needs, and nothing needed is gone."""
    free_lease(volume)
    removed = gc_volume(Volume.objects.select_related("storage").get(pk=volume.pk))
    assert removed is not None, "GC was refused although nobody holds the lease"
    garbage, missing = storage_state(volume)
    card["garbage"] += len(garbage)
    card["missing"] += len(missing)
    assert not garbage and not missing, f"after GC: garbage {sorted(garbage)}, missing {sorted(missing)}"
    return removed


def start_worker(volume: Volume, cache_dir: Path, rounds: int = 1, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "tests/reliability/sync_worker.py", str(volume.pk), str(cache_dir), str(rounds)],
        env=worker_env(VOLUMES_TRANSFER_THREADS=2, **env), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def acknowledged(stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("acknowledged ")]


def check_acknowledged_survive(volume: Volume, stdout: str) -> None:
    """Each acknowledged generation is still the current one or an ancestor of it (its history row
    may be pruned by GC's retention, so the pointer is what counts)."""
    volume.refresh_from_db()
    for generation in acknowledged(stdout):
        card["acks"] += 1
        lost = volume.generation < generation
        card["acks lost"] += lost
        assert not lost, f"generation {generation} was acknowledged, then lost"


# --- crash points ---------------------------------------------------------------------------


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_a_process_killed_at_a_crash_point_leaves_one_whole_generation_and_gc_cleans_up(volume, tmp_path, crash_at):
    push_next(volume, tmp_path / "seed")
    proc = start_worker(volume, tmp_path / "worker", VOLUMES_CRASH_AT=crash_at)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the worker was not killed at {crash_at}: {stderr[-2000:]}"

    generation = check_whole(volume, tmp_path)
    assert generation == (2 if crash_at.startswith("push.after_commit") else 1)
    check_acknowledged_survive(volume, stdout)
    if crash_at.startswith("push.after_commit"):
        assert acknowledged(stdout) == [2]
    collect_and_check(volume)  # which also proves GC kept every object the generation needs
    # The next holder commits on top, re-uploading whatever GC took away.
    assert push_next(volume, tmp_path / "next") == generation + 1
    assert check_whole(volume, tmp_path) == generation + 1
    card["crash cases"] += 1


# --- storage faults -------------------------------------------------------------------------


def test_an_error_at_the_third_blob_upload_fails_the_push_clearly_and_commits_nothing(volume, tmp_path, monkeypatch):
    push_next(volume, tmp_path / "seed")
    monkeypatch.setenv("VOLUMES_STORAGE_FAULT", "put_file:3:error")
    clear_store_cache()
    with pytest.raises(StorageUnavailable) as info:
        push_next(volume, tmp_path / "failing")
    label = store_for_storage(volume.storage).label
    assert label in str(info.value) and "then retry" in str(info.value)
    monkeypatch.delenv("VOLUMES_STORAGE_FAULT")
    clear_store_cache()
    assert check_whole(volume, tmp_path) == 1
    assert push_next(volume, tmp_path / "failing") == 2  # the same cache retries and succeeds
    assert check_whole(volume, tmp_path) == 2
    collect_and_check(volume)


@pytest.mark.parametrize("fault", ["put_bytes:2:error", "put_bytes:2:transient:2"])
def test_a_manifest_part_that_fails_to_store_commits_nothing_and_a_blip_is_ridden_out(volume, tmp_path, monkeypatch,
                                                                                      fault):
    """Parts are written together (a local folder: one batch, flushed once); one failing among them leaves the
    previous generation current and no temp file behind, and a blip is retried."""
    push_next(volume, tmp_path / "seed")
    monkeypatch.setenv("VOLUMES_STORAGE_FAULT", fault)
    clear_store_cache()
    if fault.endswith("error"):
        with pytest.raises(StorageUnavailable):
            push_next(volume, tmp_path / "failing")
        assert check_whole(volume, tmp_path) == 1
        if volume.storage.kind == "filesystem":
            store = store_for_storage(volume.storage)
            root = Path(getattr(store, "inner", store).root)
            assert not [p for p in root.rglob("*") if p.name.endswith(".volumes-tmp")]
        monkeypatch.delenv("VOLUMES_STORAGE_FAULT")
        clear_store_cache()
    assert push_next(volume, tmp_path / "failing") == 2
    assert check_whole(volume, tmp_path) == 2
    collect_and_check(volume)


class _CountsStoreCalls(DirectRemote):
    """Counts what the push's lookups ask of the storage."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def _store(self, lease):
        store, prefix = super()._store(lease)
        calls = self.calls

        class Counted:
            kind = store.kind

            def __getattr__(self, name):
                method = getattr(store, name)
                return lambda *args, **kwargs: calls.update([name]) or method(*args, **kwargs)

        return Counted(), prefix


def test_a_push_asking_about_many_blobs_lists_the_folder_once_unless_it_is_much_bigger(volume, monkeypatch):
    """A cold push asks about every blob of the volume: one listing instead of a request each. The answer is the
    same either way. A volume known to hold many more blobs than are asked about is not listed, and a listing that
    turns out much longer than the ask is given up for lookups."""
    from volumes.engine import remote as remote_module

    remote = _CountsStoreCalls()
    lease = remote.acquire(volume.workspace_id, volume.name, "test", wait=30)
    network = volume.storage.kind != "filesystem"  # a local folder answers from its own listing (absent)
    try:
        store, prefix = DirectRemote._store(remote, lease)
        asked = {hashlib.sha256(str(i).encode()).hexdigest() for i in range(100)}
        stored = set(sorted(asked)[:11])
        for digest in stored:
            store.put_bytes(blob_key(prefix, digest), b"x")
        for known, listings, lookups in [(0, 1, 0), (11, 1, 0), (None, 0, 100), (10_000, 0, 100)]:
            remote.calls.clear()
            assert remote.missing_blobs(lease, asked, stored=known) == asked - stored
            if network:
                assert (remote.calls["list_names"], remote.calls["exists"]) == (listings, lookups), (known, remote.calls)
        remote.calls.clear()
        monkeypatch.setattr(remote_module, "LISTED_PER_ASKED", 0.1)  # 10 names for 100 asked: the 11 are too many
        assert remote.missing_blobs(lease, asked, stored=0) == asked - stored
        if network:
            assert (remote.calls["list_names"], remote.calls["exists"]) == (1, 100), remote.calls
        remote.calls.clear()
        assert remote.missing_blobs(lease, set(sorted(asked)[:63]), stored=0) == set(sorted(asked)[11:63])
        if network:  # a few: looked up, no listing
            assert (remote.calls["list_names"], remote.calls["exists"]) == (0, 63), remote.calls
    finally:
        remote.release(lease)


def test_a_truncated_download_fails_the_pull_and_leaves_no_damaged_file_in_the_cache(volume, tmp_path, monkeypatch):
    push_next(volume, tmp_path / "seed")
    monkeypatch.setenv("VOLUMES_STORAGE_FAULT", "get_file:2:truncate")
    clear_store_cache()
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "puller", wait=30)
    cached = WorkerCache(tmp_path / "cache", 10**12).volume(volume.workspace_id, volume.name)
    try:
        with pytest.raises(IntegrityError) as info:
            sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    assert volume.name in str(info.value) and "does not match its hash" in str(info.value)
    wanted = generations.files_of(1)
    for path, entry in generations.listing(cached.tree).items():
        if entry[0] == "file":
            assert entry[1] == wanted[path][0], f"{path} is in the cache with damaged content"
    assert cached.synced_manifest(lease.manifest_key) is None  # the cache does not claim the generation
    assert not any(cached.staging.iterdir())

    monkeypatch.delenv("VOLUMES_STORAGE_FAULT")
    clear_store_cache()
    lease = remote.acquire(volume.workspace_id, volume.name, "puller", wait=30)
    try:
        sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    assert generations.listing(cached.tree) == generations.expected(1)


class StopsStorageAfterUploads(DirectRemote):
    """Stops the storage server right after the n-th blob upload of the push."""

    def __init__(self, storage: PrivateStorage, after: int) -> None:
        super().__init__()
        self.storage, self.after, self.uploads, self.lock = storage, after, 0, threading.Lock()

    def upload_blob(self, lease, digest, local_path, hashed_as=None) -> None:
        super().upload_blob(lease, digest, local_path, hashed_as)
        with self.lock:
            self.uploads += 1
            if self.uploads == self.after:
                self.storage.stop()
                self.stopped_at = time.monotonic()
                self.stopped()

    def stopped(self) -> None:
        """Called once, under the lock, right after the stop."""


@pytest.mark.parametrize("kind", KINDS)
def test_storage_stopped_mid_push_fails_clearly_and_the_previous_generation_is_intact(kind, tmp_path, server_logs,
                                                                                      settings):
    # Down for longer than the retries last (VOLUMES_STORAGE_RETRY_FOR): the push gives up.
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 2.0}
    storage = PrivateStorage(kind, tmp_path, server_logs)
    try:
        volume = make_volume(kind, storage.config)
        push_next(volume, tmp_path / "seed")
        remote = StopsStorageAfterUploads(storage, after=2)
        with pytest.raises(StorageUnavailable) as info:
            push_next(volume, tmp_path / "pusher", remote=remote)
        card["stop to error, worst"] = max(card["stop to error, worst"], time.monotonic() - remote.stopped_at)
        message = str(info.value)
        assert store_for_storage(volume.storage).label in message, message
        assert "Check that it is running" in message and "then retry" in message, message
        assert Volume.objects.get(pk=volume.pk).generation == 1
        storage.start()
        assert check_whole(volume, tmp_path) == 1
        collect_and_check(volume)
        assert push_next(volume, tmp_path / "pusher") == 2
        assert check_whole(volume, tmp_path) == 2
    finally:
        storage.close()


class RestartsStorageAfterUploads(StopsStorageAfterUploads):
    """Stops the storage after the n-th upload and starts it again `down_for` seconds later."""

    def __init__(self, storage, after: int, down_for: float) -> None:
        super().__init__(storage, after)
        self.down_for, self.restarter = down_for, None

    def stopped(self) -> None:
        # Here, under the lock: an upload another thread finished meanwhile must not hide the stop (one did, reading
        # the count after the lock, and the storage then never came back).
        self.restarter = threading.Timer(self.down_for, self.storage.start)
        self.restarter.start()


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_storage_stopped_and_restarted_mid_push_is_ridden_out(kind, tmp_path, server_logs, settings):
    """A storage server down for a few seconds during a push: the push retries and commits."""
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 60.0}
    storage = PrivateStorage(kind, tmp_path, server_logs)
    try:
        volume = make_volume(kind, storage.config)
        push_next(volume, tmp_path / "seed")
        remote = RestartsStorageAfterUploads(storage, after=2, down_for=3.0)
        lines: list[str] = []
        remote.notify = lines.append
        assert push_next(volume, tmp_path / "pusher", remote=remote) == 2
        remote.restarter.join()
        # The vendor SDKs retry too (boto3's connect retries, google-cloud-storage's conditional writes):
        # on a slow machine they can ride out the outage before our retry has to say so (the notice
        # itself is checked in tests/engine/test_retry.py). Never more than one notice either way.
        assert len(lines) <= 1, lines
        assert all("retrying for up to 60 s" in line for line in lines), lines
        assert check_whole(volume, tmp_path) == 2
        collect_and_check(volume)
        card["restarts ridden out"] += 1
    finally:
        storage.close()


def test_a_bad_fault_spec_is_refused_saying_how_to_write_it():
    from volumes.storage import faults

    assert faults.parse("put_file:3:error, get_file:2:truncate") == {"put_file": (3, "error"),
                                                                     "get_file": (2, "truncate")}
    for bad in ("put_file:0:error", "put_file:x:error", "rename:1:error", "exists:1:truncate", "put_file:1:slow"):
        with pytest.raises(ValueError, match="OPERATION:N:error"):
            faults.parse(bad)


# --- random kills with a concurrent reader --------------------------------------------------


class Reader(threading.Thread):
    """Pulls the volume's current generation into its own cache every 100 ms (without a lease: a
    snapshot of the pointer) and checks each pull is that one whole generation."""

    def __init__(self, volume: Volume, cache_root: Path) -> None:
        super().__init__(daemon=True)
        self.volume, self.cached = volume, WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        self.stop, self.pulls, self.problems = threading.Event(), 0, []

    def run(self) -> None:
        remote = DirectRemote()
        try:
            while not self.stop.is_set():
                row = Volume.objects.values("generation", "manifest_key").get(pk=self.volume.pk)
                lease = Lease(self.volume.pk, self.volume.workspace_id, self.volume.name, 0, "reader",
                              row["generation"], row["manifest_key"], 0)
                manifest, _ = sync.pull(remote, lease, self.cached)
                tree = generations.listing(self.cached.tree)
                hashes = {e.path: e.hash for e in manifest.files}
                matches_manifest = set(manifest.entries) == set(tree) and all(
                    hashlib.sha256(tree[path][1]).hexdigest() == digest for path, digest in hashes.items())
                if not matches_manifest or tree != generations.expected(row["generation"]):
                    self.problems.append(f"pull of generation {row['generation']} is not that whole generation")
                self.pulls += 1
                self.stop.wait(0.1)
        except Exception as exc:  # any failure of a pull of a committed generation is a finding
            self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


@pytest.mark.parametrize("kind", RANDOM_KILL_KINDS)
def test_random_kills_during_pushes_never_show_a_reader_a_mix_of_generations(kind, request, tmp_path):
    volume = make_volume(kind, backend_config(kind, request, tmp_path))
    push_next(volume, tmp_path / "seed")
    reader = Reader(volume, tmp_path / "reader")
    reader.start()
    rng = random.Random(f"sync-{kind}")
    kills = scale(5, 50)
    try:
        for attempt in range(kills):
            proc = start_worker(volume, tmp_path / f"worker-{attempt % 2}")
            ready = proc.stdout.readline()
            assert ready.startswith("ready"), proc.communicate(timeout=60)[1][-2000:]
            time.sleep(rng.uniform(0, 0.3))
            proc.kill()
            stdout, _ = proc.communicate(timeout=60)
            card["kills"] += 1
            free_lease(volume)
            check_acknowledged_survive(volume, stdout)
    finally:
        deadline = time.monotonic() + 30
        while reader.pulls < 3 and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)  # at least a few pulls, even when the kills were quick
        reader.stop.set()
        reader.join(60)
    card["reader pulls"] += reader.pulls
    card["violations"] += len(reader.problems)
    assert not reader.problems, reader.problems[:5]
    check_whole(volume, tmp_path)
    collect_and_check(volume)


# --- damaged cache --------------------------------------------------------------------------


def test_after_a_killed_pull_a_damaged_cache_is_repaired_by_the_next_pull(volume, tmp_path):
    push_next(volume, tmp_path / "seed")
    proc = start_worker(volume, tmp_path / "worker", VOLUMES_CRASH_AT="pull.after_file:3")
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read()[-2000:]
    free_lease(volume)
    cached = WorkerCache(tmp_path / "worker", 10**12).volume(volume.workspace_id, volume.name)
    present = sorted(p for p, e in generations.listing(cached.tree).items() if e[0] == "file")
    assert len(present) >= 3, present
    # Same size and mtime, other bytes: only the stat key's ctime tells it changed.
    damaged = cached.tree / present[0]
    st = damaged.stat()
    damaged.write_bytes(b"X" * st.st_size)
    os.utime(damaged, ns=(st.st_atime_ns, st.st_mtime_ns))
    (cached.tree / present[1]).unlink()
    (cached.tree / present[2]).unlink()
    (cached.tree / present[2]).mkdir()  # a folder where a file belongs
    (cached.tree / "stray.txt").write_text("not in any generation")
    (cached.tree / "latest").unlink(missing_ok=True)
    (cached.tree / "latest").write_text("a file where a link belongs")

    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "repair", wait=30)
    try:
        sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    assert generations.listing(cached.tree) == generations.expected(1)
    card["whole checks"] += 1


# --- GC racing pushes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_gc_racing_pushes_waits_for_the_lease_and_never_loses_a_needed_blob(kind, request, tmp_path, settings):
    # Keep only the current generation, so every GC deletes the previous one's blobs.
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0}
    volume = make_volume(kind, backend_config(kind, request, tmp_path))
    push_next(volume, tmp_path / "seed")
    held = leases.acquire(volume.pk, "a pushing job")
    assert gc_volume(Volume.objects.get(pk=volume.pk)) is None  # refused while a push holds the lease
    leases.release(held)

    rounds = scale(4, 20)
    proc = start_worker(volume, tmp_path / "worker", rounds=rounds)
    store = store_for_storage(volume.storage)
    prefix = volume_prefix(volume.workspace_id, volume.name)
    lost: list[str] = []
    while proc.poll() is None:
        result = gc_volume(Volume.objects.select_related("storage").get(pk=volume.pk))
        card["gc runs"] += 1
        card["gc refused"] += result is None
        if result is not None:  # nobody can commit between this GC and the check but the worker, which only adds
            row = Volume.objects.values("manifest_key").get(pk=volume.pk)
            manifest = manifest_store.read(store, row["manifest_key"])
            lost += [h for h in manifest.hashes() if not store.exists(blob_key(prefix, h))]
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert not lost, f"GC deleted blobs of the committed generation: {lost[:3]}"
    card["missing"] += len(lost)
    check_acknowledged_survive(volume, stdout)
    assert check_whole(volume, tmp_path) == 1 + rounds
    collect_and_check(volume)


# --- leftovers of interrupted uploads -------------------------------------------------------


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_gc_removes_what_interrupted_uploads_left_under_the_volume_only(kind, request, tmp_path):
    """S3: an incomplete multipart upload keeps its parts (billed, never listed) until aborted.
    Filesystem: a write killed before its rename leaves a temp file."""
    volume = make_volume(kind, backend_config(kind, request, tmp_path))
    push_next(volume, tmp_path / "seed")
    store = store_for_storage(volume.storage)
    prefix = volume_prefix(volume.workspace_id, volume.name)
    other = volume_prefix(volume.workspace_id, "other-volume")
    for where in (prefix, other):
        name = f"{where}blobs/{'ab' * 32}"
        if kind == "s3":
            upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=store.prefix + name)
            store.client.upload_part(Bucket=store.bucket, Key=store.prefix + name, UploadId=upload["UploadId"],
                                     PartNumber=1, Body=b"x" * 1024)
        else:
            folder = Path(store.root, *(where + "blobs").split("/"))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f".{'ab' * 32}.0123456789ab.volumes-tmp").write_bytes(b"x" * 1024)
    assert incomplete_uploads(store, prefix) and incomplete_uploads(store, other)

    removed = collect_and_check(volume)
    assert removed["incomplete uploads"] == 1
    assert incomplete_uploads(store, other), "GC touched another volume's upload"
    assert check_whole(volume, tmp_path) == 1


# --- a GC paused past its lease -------------------------------------------------------------

GC_PROCESS = """
import json, sys
from volumes.models import Volume
from volumes.services.gc import gc_volume
print(json.dumps(gc_volume(Volume.objects.select_related("storage").get(pk=int(sys.argv[1])))), flush=True)
"""


def process_state(pid: int) -> str:
    """'T' for a stopped process, 'S'/'R'... otherwise (Linux /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_gc_paused_past_its_ttl_never_deletes_a_garbage_blob_that_a_job_reused(kind, request, tmp_path, settings):
    """GC plans its deletes, is stopped (SIGSTOP) until its lease expires; a job takes the lease, puts back
    a file whose blob GC saw as garbage (uploading nothing: the blob exists), commits and releases; GC
    resumes. The committed generation must still pull whole."""
    settings.VOLUMES = {**settings.VOLUMES, "HISTORY_KEEP_GENERATIONS": 1, "HISTORY_KEEP_DAYS": 0, "GC_GRACE": 0}
    volume = make_volume(kind, backend_config(kind, request, tmp_path))
    reused = b"a file that is deleted, then put back by a re-run\n" * 100
    digest = hashlib.sha256(reused).hexdigest()
    store = store_for_storage(volume.storage)
    key = blob_key(volume_prefix(volume.workspace_id, volume.name), digest)

    def put_back(tree: Path) -> None:
        (tree / "again.bin").write_bytes(reused)

    commit(volume, tmp_path / "job", lambda tree: (tree / "kept.txt").write_text("kept"))
    commit(volume, tmp_path / "job", put_back)
    commit(volume, tmp_path / "job", lambda tree: (tree / "again.bin").unlink())  # the blob is garbage now
    assert store.exists(key)

    gc = subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup()\n" + GC_PROCESS, str(volume.pk)],
        env=worker_env(VOLUMES_LEASE_TTL=3, VOLUMES_GC_GRACE=0, VOLUMES_HISTORY_KEEP_GENERATIONS=1,
                       VOLUMES_HISTORY_KEEP_DAYS=0, VOLUMES_PAUSE_AT="gc.before_delete:1"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while process_state(gc.pid) != "T":
            assert gc.poll() is None and time.monotonic() < deadline, gc.communicate()[1][-2000:]
            time.sleep(0.05)
        # The job waits for GC's lease to expire (3 s), reuses the garbage blob and commits.
        stats = commit(volume, tmp_path / "job", put_back)
        assert stats.committed_generation == 4 and stats.files_pushed == 0  # nothing uploaded: the blob exists
    finally:
        os.kill(gc.pid, signal.SIGCONT)
    stdout, stderr = gc.communicate(timeout=60)
    assert gc.returncode == 0, stderr[-2000:]
    card["paused gc cases"] += 1
    lost = not store.exists(key)
    card["paused gc lost"] += lost
    assert not lost, f"GC deleted the blob of again.bin after it lost its lease: {stdout}"
    assert check_tree(volume, tmp_path / "fresh") == {"kept.txt": b"kept", "again.bin": reused}


def check_tree(volume: Volume, cache_root: Path) -> dict[str, bytes]:
    """The files of the volume's current generation, pulled into a fresh cache."""
    free_lease(volume)
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, "checker", wait=30)
    try:
        cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
        sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    return {str(p.relative_to(cached.tree)): p.read_bytes() for p in cached.tree.rglob("*") if p.is_file()}
