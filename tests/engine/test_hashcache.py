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
