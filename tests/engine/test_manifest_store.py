"""Manifests stored in shared parts: a one-file change costs about the same in a big volume as in a
small one, and what readers assemble is exactly the manifest that was written."""
from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

from tests.servers import make_store
from volumes.engine import manifest_store, sync
from volumes.engine.manifest import DIR, FILE, Entry, Manifest
from volumes.exceptions import IntegrityError

PREFIX = "volumes/acme/data/"


def volume_of(files: int) -> Manifest:
    entries = {}
    for d in range(files // 100):
        entries[f"dir{d:04d}"] = Entry(f"dir{d:04d}", DIR, mode=0o755)
        for f in range(100):
            path = f"dir{d:04d}/file-{f:04d}.bin"
            entries[path] = Entry(path, FILE, 1, hashlib.sha256(path.encode()).hexdigest(), 0o644, 10**18, gen=1)
    return Manifest(entries, 1)


def one_file_changed(manifest: Manifest, generation: int, which: int) -> Manifest:
    entries = dict(manifest.entries)
    files = sorted(p for p, e in entries.items() if e.type == FILE)
    path = files[which * len(files) // 10]
    entries[path] = Entry(path, FILE, 2, hashlib.sha256(b"new").hexdigest(), 0o644, 10**18, gen=generation)
    return Manifest(entries, generation)


@pytest.fixture
def store(tmp_path):
    return make_store("filesystem", {"root": str(tmp_path / "storage")})


def test_a_one_file_change_costs_about_the_same_whatever_the_volume_size(store):
    cost = {}
    for files in (1_000, 20_000):
        base = volume_of(files)
        manifest_store.write(store, f"{PREFIX}{files}/manifests/1.json", base)
        written = []
        for which in range(10):  # one file changed at ten places of the volume, each on top of the base
            changed = one_file_changed(base, 2, which)
            key = f"{PREFIX}{files}/manifests/2-{which}.json"
            written.append(manifest_store.write(store, key, changed))
            assert manifest_store.read(store, key) == changed
        cost[files] = sum(written) / len(written)
        print(f"{files:,} files: a one-file change stores {cost[files]:,.0f} bytes of manifest on average "
              f"(the whole manifest: {len(base.to_json()):,})")
    assert cost[20_000] < 2 * cost[1_000] and cost[20_000] < len(volume_of(20_000).to_json()) / 50


def test_old_single_document_manifests_still_read_and_a_damaged_part_is_refused(store):
    manifest = volume_of(300)
    store.put_bytes(f"{PREFIX}manifests/old.json", manifest.to_json())  # format 1, before parts
    assert manifest_store.read(store, f"{PREFIX}manifests/old.json") == manifest
    manifest_store.write(store, f"{PREFIX}manifests/new.json", manifest)
    digest = json.loads(store.get_bytes(f"{PREFIX}manifests/new.json"))["parts"][0]
    store.put_bytes(manifest_store.part_key(PREFIX, digest), b"[]")
    with pytest.raises(IntegrityError, match="damaged"):
        manifest_store.read(store, f"{PREFIX}manifests/new.json")
    salvaged = Manifest.salvage(manifest_store.read_bytes(store, f"{PREFIX}manifests/new.json", salvage=True))[0]
    assert 0 < len(salvaged.entries) < len(manifest.entries)


def test_parts_of_the_base_generation_are_not_even_looked_up(store, monkeypatch):
    base = volume_of(5_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    looked_up = []
    exists = type(store).exists
    monkeypatch.setattr(type(store), "exists", lambda self, key: looked_up.append(key) or exists(self, key))
    changed = one_file_changed(base, 2, 3)
    manifest_store.write(store, f"{PREFIX}manifests/2.json", changed, known)
    assert 0 < len(looked_up) <= 3  # the changed leaf and the index parts above it
    assert manifest_store.read(store, f"{PREFIX}manifests/2.json") == changed


@pytest.mark.parametrize("text", ["plain.txt", 'quote".txt', "back\\slash", "tab\there", "nl\nx", "del\x7fx",
                                  "caf\u00e9/\u4e2d\u6587", "line\u2028sep", "zero\u200bwidth", "\ud800lone"])
def test_an_entry_is_encoded_byte_for_byte_as_json_dumps_wrote_it(text):
    # Parts are shared between generations by digest, so the fast encoding must equal the one older
    # generations were written with, whatever the text holds.
    for entry in (Entry(text, FILE, 5, "ab" * 32, 0o644, -1, gen=3), Entry("l", "link", target=text, mtime_ns=2**62),
                  Entry("x", FILE, True, "", 0o7777, 0, gen=False)):
        try:
            expected = json.dumps(entry._asdict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            with pytest.raises(UnicodeEncodeError):
                manifest_store.encode_entry(entry)
            continue
        assert manifest_store.encode_entry(entry) == expected


def test_new_parts_in_a_local_folder_share_one_flush_made_before_the_document_is_written(store, monkeypatch):
    """A change spread over a volume makes a new part per touched run; an fsync each cost 0.1 s per 100 parts
    on ext4. They are flushed together (syncfs), and before the document that names them exists."""
    from volumes.storage import filebatch

    base = volume_of(20_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    changed = base
    for which in range(10):
        changed = one_file_changed(changed, 2, which)
    events = []
    fsync, syncfs = filebatch.os.fsync, filebatch.syncfs
    monkeypatch.setattr(filebatch.os, "fsync", lambda fd: events.append("fsync") or fsync(fd))
    monkeypatch.setattr(filebatch, "syncfs", lambda path: events.append("syncfs") or syncfs(path))
    put_bytes = type(store).put_bytes
    monkeypatch.setattr(type(store), "put_bytes",
                        lambda self, key, data, **kw: events.append(f"put {key}") or put_bytes(self, key, data, **kw))
    new = manifest_store.write(store, f"{PREFIX}manifests/2.json", changed, known)
    assert new > 10 * 1000  # ten new leaf parts at least
    assert events.count("syncfs") == 1 and events.count("fsync") <= 3, events  # the parts' folder, the document
    assert events.index("syncfs") < events.index(f"put {PREFIX}manifests/2.json")
    assert [e for e in events if e.startswith("put")] == [f"put {PREFIX}manifests/2.json"]
    assert manifest_store.read(store, f"{PREFIX}manifests/2.json") == changed


def _edited(base: Manifest, rng, edits: int) -> Manifest:
    """`base` with files changed, removed and added at random places; every other entry is the base's own object,
    as a scan leaves it."""
    entries = dict(base.entries)
    files = sorted(p for p, e in entries.items() if e.type == FILE)
    for _ in range(edits):
        path = rng.choice(files)
        action = rng.choice(["change", "remove", "add", "add at the end"])
        if action == "change" and path in entries:
            entries[path] = entries[path]._replace(hash=hashlib.sha256(os.urandom(8)).hexdigest(), gen=2)
        elif action == "remove":
            entries.pop(path, None)
        else:
            new = f"{path}.new" if action == "add" else f"zzz/{rng.randrange(10**6)}.bin"
            entries[new] = Entry(new, FILE, 3, hashlib.sha256(new.encode()).hexdigest(), 0o644, 10**18, gen=2)
            entries.setdefault("zzz", Entry("zzz", DIR, mode=0o755, gen=2))
    return Manifest(entries, 2)


@pytest.mark.parametrize("seed", range(6))
def test_a_commit_on_its_base_encodes_only_the_runs_that_changed_and_stores_what_a_full_split_would(store, seed):
    """The base's runs (first and last path, count, digest: Manifest.runs) name its stored parts; a run whose
    entries are all still the base's own objects is not encoded again. The parts must be exactly those of a full
    split, or generations would stop sharing them and readers would see other bytes."""
    rng = random.Random(seed)
    base = volume_of(5_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    assert base.runs and sum(run[2] for run in base.runs) > 4_800  # all but the tail run
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    edits = rng.choice([1, 5, 40])
    current = _edited(base, rng, edits)
    full_top, full_depth, full_parts = manifest_store.split(Manifest(dict(current.entries), 2))
    encoded = []
    encode = manifest_store.encode_entry
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_store, "encode_entry", lambda e: encoded.append(e) or encode(e))
        top, depth, parts = manifest_store.split(current, base, known)
    assert (top, depth) == (full_top, full_depth)
    assert set(parts) <= set(full_parts) and set(full_parts) - set(parts) <= known
    assert len(encoded) <= 2 * manifest_store.MAX_PART * edits  # the runs around each edit, at most two
    assert sum(run[2] for run in current.runs) <= len(current.entries)
    manifest_store.write(store, f"{PREFIX}manifests/2.json", current, known, base)
    assert manifest_store.read(store, f"{PREFIX}manifests/2.json") == current


def _content_changed(base: Manifest, every: int, start: int) -> tuple[Manifest, list[str]]:
    """`base` with every `every`th file given new content (a job's 1% spread out), the rest its own objects."""
    entries = dict(base.entries)
    picked = sorted(p for p, e in entries.items() if e.type == FILE)[start::every]
    for path in picked:
        entries[path] = entries[path]._replace(size=7, hash=hashlib.sha256(path.encode() + b"new").hexdigest(), gen=2)
    return Manifest(entries, 2), picked


@pytest.mark.parametrize("seed", range(4))
def test_a_content_change_in_a_local_store_encodes_only_the_changed_entries_and_stores_what_a_full_split_would(
        store, seed):
    """A run of the base whose paths all stand but whose content changed here and there (every 97th file: nearly
    every run) is the same run with new rows: the other rows are cut from its stored part, so a commit encodes
    only the entries that changed. The parts stay exactly those of a full split."""
    base = volume_of(5_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    current, picked = _content_changed(base, 97, seed)
    full_top, full_depth, full_parts = manifest_store.split(Manifest(dict(current.entries), 2))
    encoded = []
    encode = manifest_store.encode_entry
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_store, "encode_entry", lambda e: encoded.append(e.path) or encode(e))
        manifest_store.write(store, f"{PREFIX}manifests/2.json", current, known, base)
    tail = [p for p in current.entries if p > base.runs[-1][1]]  # the last run ended with the entries: no run
    assert sorted(set(encoded) - set(tail)) == [p for p in picked if p not in tail]
    assert manifest_store.part_digests(store, f"{PREFIX}manifests/2.json") == (
        manifest_store.part_digests(store, f"{PREFIX}manifests/1.json") & set(full_parts) | set(full_parts))
    assert manifest_store.read(store, f"{PREFIX}manifests/2.json") == current
    assert manifest_store.split(Manifest(dict(current.entries), 2), base, known)[:2] == (full_top, full_depth)


def test_a_stored_part_that_is_not_what_its_name_says_is_never_cut_into_a_new_one(store):
    """Rows are taken from a stored part only once its bytes hash to its name: a damaged or swapped part (here one
    size changed, so it still has a row for each entry) must not put its rows into the next generation."""
    base = volume_of(2_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    for first, last, n, digest in base.runs:
        key = manifest_store.part_key(PREFIX, digest)
        store.put_bytes(key, store.get_bytes(key).replace(b'"size":1,', b'"size":5,', 1))
    current, picked = _content_changed(base, 50, 3)
    manifest_store.write(store, f"{PREFIX}manifests/2.json", current, known, base)
    stored = {part: store.get_bytes(manifest_store.part_key(PREFIX, part))
              for part in manifest_store.part_digests(store, f"{PREFIX}manifests/2.json")}
    _, _, full_parts = manifest_store.split(Manifest(dict(current.entries), 2))
    assert all(stored[d] == full_parts[d] for d in stored if d in full_parts and d not in known)
    assert not any(b'"size":5,' in part for d, part in stored.items() if d not in known)


def test_runs_are_reused_only_for_stored_parts_and_the_base_s_own_entries(store):
    base = volume_of(2_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    known = manifest_store.part_digests(store, f"{PREFIX}manifests/1.json")
    full = manifest_store.split(Manifest(dict(base.entries), 1))
    # Not stored (another volume's runs, a part GC took): every entry is encoded, and every part returned.
    assert manifest_store.split(Manifest(dict(base.entries), 1), base, frozenset()) == full
    # Equal entries that are not the base's objects: encoded again (an equal tuple can still format otherwise,
    # True == 1), so nothing is named without being written from these very entries.
    copies = Manifest({p: Entry(*e) for p, e in base.entries.items()}, 1)
    assert manifest_store.split(copies, base, known) == full
    # Runs that do not describe the base (a damaged cache record): a run is only taken where its first and last
    # paths and its count fit the entries at that place.
    shifted = Manifest(dict(base.entries), 1, [(run[0], run[1], run[2] + 1, run[3]) for run in base.runs])
    assert manifest_store.split(Manifest(dict(base.entries), 1), shifted, known)[0] == full[0]


def test_a_worker_keeps_the_runs_of_what_it_committed_so_a_new_process_reuses_them(volume, tmp_path):
    """Saved with the worker's copy of the manifest (manifest.bin): the next job, in a new process, re-encodes
    only what it changed."""
    from volumes.engine import cache as cache_module

    from .helpers import checkout

    def write(tree, files=range(3_000)):
        for i in files:
            (tree / f"d{i % 30}").mkdir(exist_ok=True)
            (tree / f"d{i % 30}" / f"f{i}.txt").write_text(f"{i}")

    remote, lease, cached, base, _ = checkout(volume, tmp_path / "cache")
    write(cached.tree)
    sync.push(remote, lease, cached, base)
    remote.release(lease)
    cache_module._MEMO.clear()  # a new process: only the files
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "cache")
    assert base.runs and sum(run[2] for run in base.runs) > 2_500
    write(cached.tree, [7])
    (cached.tree / "d7" / "f7.txt").write_text("changed")
    encoded = []
    encode = manifest_store.encode_entry
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_store, "encode_entry", lambda e: encoded.append(e) or encode(e))
        sync.push(remote, lease, cached, base)
    remote.release(lease)
    assert 0 < len(encoded) <= 2 * manifest_store.MAX_PART
    _, lease, cached, now, _ = checkout(volume, tmp_path / "fresh")
    assert (cached.tree / "d7" / "f7.txt").read_text() == "changed" and sum(1 for _ in now.files) == 3_000


@pytest.mark.parametrize("runs", [[("a", "b", 0, "c" * 64)], [("a", "b", 2)], [["a", "b", 2, "c" * 64]], "text",
                                  [("a", None, 2, "c" * 64)], [("a", "b", 2, ["c"])]])
def test_runs_in_a_damaged_copy_are_not_used_and_the_commit_splits_in_full(volume, tmp_path, runs):
    import marshal

    from volumes.engine import cache as cache_module

    from .helpers import checkout, commit

    commit(volume, tmp_path / "cache", lambda tree: [(tree / f"f{i}").write_text(str(i)) for i in range(300)])
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "cache")
    tag, generation, columns, _ = marshal.loads(cached._manifest.read_bytes())
    cached._manifest.write_bytes(marshal.dumps((tag, generation, columns, runs)))
    cache_module._MEMO.clear()
    base = cached.synced_manifest(lease.manifest_key)
    assert base is not None and base.runs is None and len(base.entries) == 300
    (cached.tree / "f7").write_text("changed")
    assert sync.push(remote, lease, cached, base).committed_generation == 2
    remote.release(lease)
    _, lease, fresh, _, _ = checkout(volume, tmp_path / "fresh")
    assert (fresh.tree / "f7").read_text() == "changed"


@pytest.mark.parametrize("damage", ["a column less", "a column short of one entry"])
def test_a_local_manifest_copy_whose_columns_are_not_as_written_is_a_cache_miss(volume, tmp_path, damage):
    """The worker's copy is trusted, not checked entry by entry; its shape is: an entry built from a column too few
    (short of a field) or from columns of different lengths (zip drops the rest) must never stand for the volume."""
    import marshal

    from volumes.engine import cache as cache_module

    from .helpers import checkout, commit

    commit(volume, tmp_path / "cache", lambda tree: [(tree / f"f{i}").write_text(str(i)) for i in range(30)])
    remote, lease, cached, base, _ = checkout(volume, tmp_path / "cache")
    tag, generation, columns, runs = marshal.loads(cached._manifest.read_bytes())
    columns = columns[:-1] if damage == "a column less" else (columns[0][:-1], *columns[1:])
    cached._manifest.write_bytes(marshal.dumps((tag, generation, columns, runs)))
    cache_module._MEMO.clear()
    assert cached.synced_manifest(lease.manifest_key) is None
    remote.release(lease)
    _, lease, cached, again, _ = checkout(volume, tmp_path / "cache")
    assert again == base and len(again.entries) == 30


def _part_reads(monkeypatch, store_class) -> list[str]:
    """The manifest parts read from now on, by key."""
    reads = []
    get_bytes = store_class.get_bytes
    monkeypatch.setattr(store_class, "get_bytes",
                        lambda self, key: (reads.append(key) if "/manifests/parts/" in key else None) or get_bytes(self, key))
    return reads


def test_a_pull_after_another_workers_commit_fetches_only_the_parts_that_commit_wrote(volume, tmp_path, monkeypatch):
    """Two workers on one volume: the second one's pull of the first one's one-file change reads the one leaf part
    that commit wrote, not the 48 of the manifest; its tree is exactly right, and its own commit after it encodes only
    the run it changed."""
    from volumes.engine.cache import WorkerCache
    from volumes.storage.filesystem import FileSystemStore

    from .helpers import checkout, commit, tree_listing

    def write(tree):
        for i in range(3_000):
            (tree / f"d{i % 30:02d}").mkdir(exist_ok=True)
            (tree / f"d{i % 30:02d}" / f"f{i:04d}.txt").write_text(f"{i}")

    commit(volume, tmp_path / "one", write)
    remote, lease, _, _, _ = checkout(volume, tmp_path / "two")  # the second worker holds generation 1
    remote.release(lease)
    commit(volume, tmp_path / "one", lambda tree: (tree / "d07" / "f0007.txt").write_text("one's change"))

    reads = _part_reads(monkeypatch, FileSystemStore)
    remote, lease, second, base, _ = checkout(volume, tmp_path / "two")
    try:
        leaves = len(json.loads(FileSystemStore.get_bytes(remote._store(lease)[0], lease.manifest_key))["parts"])
        assert leaves > 40 and 1 <= len(reads) <= 2, f"{len(reads)} of {leaves} parts read"
        first = WorkerCache(tmp_path / "one", 10**12).volume(volume.workspace_id, volume.name)
        assert tree_listing(second.tree) == tree_listing(first.tree)
        (second.tree / "d11" / "f0011.txt").write_text("two's change")
        encoded = []
        encode = manifest_store.encode_entry
        monkeypatch.setattr(manifest_store, "encode_entry", lambda e: encoded.append(e) or encode(e))
        assert sync.push(remote, lease, second, base).committed_generation == 3
        assert 0 < len(encoded) <= manifest_store.MAX_PART  # the read's runs: only the changed one is encoded
    finally:
        remote.release(lease)
    _, lease, third, now, _ = checkout(volume, tmp_path / "three")
    assert (third.tree / "d07" / "f0007.txt").read_text() == "one's change"
    assert (third.tree / "d11" / "f0011.txt").read_text() == "two's change"
    assert len(now.entries) == 3_030


def test_a_held_generation_stands_in_for_a_part_only_where_its_entries_make_that_part_byte_for_byte(
        store, monkeypatch):
    """The worker's copy of a generation is proven part by part, never trusted: an entry it holds wrongly (its runs
    kept) makes its part fetched, and what the read gives is the stored manifest."""
    base = volume_of(5_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    changed = one_file_changed(base, 2, 3)
    manifest_store.write(store, f"{PREFIX}manifests/2.json", changed,
                         manifest_store.part_digests(store, f"{PREFIX}manifests/1.json"), base)
    held = manifest_store.read(store, f"{PREFIX}manifests/1.json")
    whole = manifest_store.read(store, f"{PREFIX}manifests/2.json")
    path = sorted(p for p, e in held.entries.items() if e.type == FILE)[0]
    lying = Manifest({**held.entries, path: held.entries[path]._replace(hash="0" * 64)}, 1, held.runs)

    reads = _part_reads(monkeypatch, type(store))
    proven = manifest_store.read(store, f"{PREFIX}manifests/2.json", like=held)
    honest_reads = len(reads)
    reads.clear()
    got = manifest_store.read(store, f"{PREFIX}manifests/2.json", like=lying)
    assert proven == whole == changed and got == whole
    assert got.entries[path].hash == changed.entries[path].hash != "0" * 64
    assert got.runs == proven.runs == whole.runs
    assert len(reads) == honest_reads + 1, "the part the lying copy would have stood in for was not fetched"
    # The held objects themselves, but for the changed leaf and the last one (a run its entries alone ended)
    assert sum(proven.entries[p] is e for p, e in held.entries.items()) >= len(held.entries) - 2 * manifest_store.MAX_PART


def test_a_read_manifest_carries_the_runs_its_writer_made_except_where_a_stored_row_was_changed_on_reading(store):
    base = volume_of(5_000)
    manifest_store.write(store, f"{PREFIX}manifests/1.json", base)
    assert manifest_store.read(store, f"{PREFIX}manifests/1.json").runs == base.runs
    path = sorted(base.entries)[2_000]
    odd = Manifest({**base.entries, path: base.entries[path]._replace(mode=0o4755)}, 1)  # stored setuid
    manifest_store.write(store, f"{PREFIX}manifests/odd.json", odd)
    read = manifest_store.read(store, f"{PREFIX}manifests/odd.json")
    assert read.entries[path].mode == 0o755  # readers take setuid off
    assert read.runs == [run for run in odd.runs if not run[0] <= path <= run[1]] and len(read.runs) == len(odd.runs) - 1


def test_a_whole_manifest_parsed_like_a_held_generation_checks_only_what_differs_from_it(monkeypatch):
    """An agent gets the whole manifest from the server: the entries equal to its own generation's are those very
    entries (a diff sees them unchanged by identity) and only the others are checked, so a bad one is still refused."""
    from volumes.engine import manifest as manifest_module

    held = Manifest.from_json(volume_of(1_000).to_json())
    checked = []
    entry_problem = manifest_module.entry_problem
    monkeypatch.setattr(manifest_module, "entry_problem", lambda e: checked.append(e.path) or entry_problem(e))
    changed = one_file_changed(held, 2, 4)
    got = Manifest.from_json(changed.to_json(), like=held)
    assert got == changed
    path = next(p for p, e in changed.entries.items() if held.entries[p] != e)
    assert checked == [path] and got.entries[path] is not held.entries[path]
    assert sum(got.entries[p] is e for p, e in held.entries.items()) == len(held.entries) - 1

    bad = Manifest({**changed.entries, "../outside": Entry("../outside", FILE, 1, "0" * 64)}, 2)
    with pytest.raises(IntegrityError, match="outside|\\.\\."):
        Manifest.from_json(bad.to_json(), like=held)
