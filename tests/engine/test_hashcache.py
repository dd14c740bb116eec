"""The hash cache's columns (engine/hashcache.py): what is written is read back exactly, shares the synced
manifest's objects only where they are equal, and a record or a file that is not right is left out, never
read as another."""
import marshal

import pytest

from volumes.engine import hashcache
from volumes.engine.cache import WorkerCache
from volumes.engine.manifest import DIR, FILE, Entry, Manifest

A, B, C = "a" * 64, "b" * 64, "c" * 64


def records():
    return {
        "one.txt": (2049, 11, 5, 1_700_000_000_123_456_789, 1_700_000_000_223_456_789, A),
        "dir/two.bin": (2049, 12, 0, -5_000_000_000, 1_700_000_001_000_000_000, B),
        "dir/ünïcode name\n.txt": (2050, 2**63 + 5, 2**40, 0, 1, C),
    }


def write_and_load(tmp_path, hashes, like=None):
    path = tmp_path / "hashes.bin"
    path.write_bytes(hashcache.encode(hashes))
    return hashcache.load(path, like)


def test_records_come_back_exactly_and_in_order(tmp_path):
    loaded = write_and_load(tmp_path, records())
    assert loaded == records() and list(loaded) == list(records())
    assert write_and_load(tmp_path, {}) == {}


def test_records_share_the_synced_manifests_objects_only_where_they_are_equal(tmp_path):
    like = Manifest({
        "one.txt": Entry("".join(["one", ".txt"]), FILE, 5, "".join(["a"] * 64), 0o644, 1_700_000_000_123_456_789),
        "dir/two.bin": Entry("dir/two.bin", FILE, 0, C, 0o644, -5_000_000_000),  # another content since
        "dir": Entry("dir", DIR),
    })
    loaded = write_and_load(tmp_path, records(), like)
    assert loaded == records()
    entry, record = like.entries["one.txt"], loaded["one.txt"]
    key = next(k for k in loaded if k == "one.txt")
    assert key is entry.path and record[5] is entry.hash and record[2] is entry.size and record[3] is entry.mtime_ns
    assert loaded["dir/two.bin"][5] == B  # its own digest, not the entry's
    assert loaded["dir/two.bin"][5] is not like.entries["dir/two.bin"].hash


def test_a_record_a_column_cannot_hold_is_left_out_and_the_rest_kept(tmp_path):
    hashes = records()
    hashes["far.txt"] = (2049, 13, 1, 2**64, 1, A)  # a time a job set past 2262
    hashes["short.txt"] = (2049, 14, 1, 1, 1, "abc")
    hashes["spaced.txt"] = (2049, 15, 1, 1, 1, "ab " + "c" * 60 + " d")  # bytes.fromhex skips spaces
    hashes["not hex.txt"] = (2049, 16, 1, 1, 1, "g" * 64)
    loaded = write_and_load(tmp_path, hashes)
    assert loaded == records()


@pytest.mark.parametrize("damage", ["truncated", "tag", "lengths", "types", "text"])
def test_a_damaged_file_is_refused_and_a_cache_reads_it_as_empty(tmp_path, damage):
    good = hashcache.encode(records())
    saved = marshal.loads(good)
    data = {
        "truncated": good[: len(good) // 2],
        "tag": marshal.dumps(("rows", *saved[1:])),
        "lengths": marshal.dumps((*saved[:2], saved[2][:8], *saved[3:])),
        "types": marshal.dumps((*saved[:7], 5)),
        "text": b"{not marshal",
    }[damage]
    path = tmp_path / "hashes.bin"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        hashcache.load(path)
    cached = WorkerCache(tmp_path / "cache", 10**9).volume("ws", "vol")
    cached.prepare()
    cached._hashes.write_bytes(data)
    assert cached.load_hashes() == {}


def test_the_dict_older_versions_wrote_is_still_read(tmp_path):
    path = tmp_path / "hashes.bin"
    path.write_bytes(marshal.dumps(records()))
    assert hashcache.load(path) == records()


def _synced(count: int, seed: int) -> tuple[Manifest, dict[str, tuple]]:
    """A manifest of folders and files, and a record for each of its files that agrees with its entry."""
    import random

    rng = random.Random(seed)
    entries, hashes = {"d": Entry("d", DIR, mode=0o755)}, {}
    for i in range(count):
        path = f"d/f{rng.randrange(10**9)}-{i}"
        digest = f"{rng.getrandbits(256):064x}"
        entries[path] = Entry(path, FILE, rng.randrange(10**6), digest, 0o644, rng.randrange(-2**40, 2**62))
        hashes[path] = (2049, rng.randrange(2**64), entries[path].size, entries[path].mtime_ns,
                        rng.randrange(2**62), digest)
    return Manifest(entries), hashes


@pytest.mark.parametrize("seed", range(8))
def test_records_written_against_a_manifest_load_against_it_in_bulk_and_exactly_whatever_differs(tmp_path, seed,
                                                                                               monkeypatch):
    """Saved against the synced manifest, its files' records come first in its order, and loading against it
    compares them with its entries column by column and builds them from its objects (no Python step a record).
    Whatever does not agree (a record of another content, a file without a record, records of files it lacks,
    another order) must load exactly as written, through the record-by-record path."""
    import random

    like, hashes = _synced(300, seed)
    rng = random.Random(seed)
    files = [p for p, e in like.entries.items() if e.type == FILE]
    damage = seed % 4
    if damage == 1:  # one file's content changed since it was recorded
        path = rng.choice(files)
        hashes[path] = (*hashes[path][:2], hashes[path][2] + 1, *hashes[path][3:])
    elif damage == 2:  # a file the hash cache has no record of, and records of files the manifest lacks
        del hashes[rng.choice(files)]
        hashes["gone"] = (2049, 1, 2, 3, 4, A)
    elif damage == 3:  # the same entries in another order
        like = Manifest(dict(reversed(like.entries.items())))
    bulk = []
    monkeypatch.setattr(hashcache, "_BATCH", 7 + seed)  # compared in batches: every seam between two is tried
    aligned = hashcache._aligned
    monkeypatch.setattr(hashcache, "_aligned", lambda *a: (lambda got: bulk.append(len(got[0])) or got)(aligned(*a)))
    path = tmp_path / "hashes.bin"
    path.write_bytes(hashcache.encode(hashes, like if damage != 3 else None))
    loaded = hashcache.load(path, like)
    assert loaded == hashes
    assert bulk == [len(files) if damage == 0 else 0]
    for path, record in loaded.items():
        entry = like.entries.get(path)
        if entry is not None and entry.hash == record[5] and entry.size == record[2]:
            assert record[5] is entry.hash and record[3] is entry.mtime_ns and record[2] is entry.size


def test_records_of_files_the_manifest_lacks_come_after_its_own_and_load_with_them(tmp_path):
    like, hashes = _synced(50, 99)
    extra = {"new-1": (2049, 5, 6, 7, 8, B), "new-2": (2050, 9, 10, 11, 12, C)}
    path = tmp_path / "hashes.bin"
    path.write_bytes(hashcache.encode({**extra, **hashes}, like))
    loaded = hashcache.load(path, like)
    assert loaded == {**hashes, **extra} and list(loaded)[-2:] == list(extra)


@pytest.mark.django_db
def test_after_a_push_and_after_a_pull_on_another_worker_the_next_job_loads_the_hash_cache_in_bulk(
        volume, tmp_path, monkeypatch):
    """What a push and a pull save is in the order of the manifest the tree is then synced as, so the next job,
    in a new process, loads it in bulk: a job's start on a big volume pays a few passes in C, not a step a file.
    Here the second worker holds the second half of the files when it pulls the first half too: its records are
    in the order it got them, not the manifest's, unless they are saved against the manifest."""
    from volumes.engine import cache as cache_module, sync

    from .helpers import checkout

    bulk = []
    aligned = hashcache._aligned
    monkeypatch.setattr(hashcache, "_aligned", lambda *a: (lambda got: bulk.append(len(got[0])) or got)(aligned(*a)))

    def job(cache: str, files=range(0)) -> int:
        """A job in a new process on the worker with that cache: its files added, pushed; the records it loaded."""
        cache_module._MEMO.clear()  # a new process: only the files
        bulk.clear()
        remote, lease, cached, base, _ = checkout(volume, tmp_path / cache)
        for i in files:
            (cached.tree / f"d{i % 4}").mkdir(exist_ok=True)
            (cached.tree / f"d{i % 4}" / f"f{i:02d}").write_text(str(i))
        sync.push(remote, lease, cached, base)
        remote.release(lease)
        return max(bulk, default=0)

    job("one", range(20, 40))
    job("two")
    job("one", range(20))
    assert job("one") == 40  # the worker that pushed
    job("two")  # pulls the first half
    assert job("two") == 40
