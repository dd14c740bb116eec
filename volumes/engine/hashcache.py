"""The hash cache's file format: path -> (dev, ino, size, mtime_ns, ctime_ns, sha256), in columns.

A column of paths, five of packed 64-bit numbers and one of digests: 100,000 records take a third of the
memory a marshalled dict of lists did, and loading them against the manifest the tree was synced as (`like`)
shares that manifest's path, size, time and hash objects instead of making copies of them.
"""
from __future__ import annotations

import marshal
import re
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manifest import Manifest

FORMAT = "columns"
TYPECODES = "QQqqq"  # dev, ino, size, mtime_ns, ctime_ns
DIGEST = 32  # bytes of a SHA-256
HEX = re.compile("[0-9a-fA-F]{64}")  # read back in lower case, as hashlib writes it


def encode(hashes: dict[str, tuple]) -> bytes:
    """The records as bytes. One that a column cannot hold (a time past 2262, a hand-made record) is left out:
    a record missing costs a hash, never a wrong one."""
    try:
        return _encode(hashes)
    except (OverflowError, TypeError, ValueError):
        return _encode({path: record for path, record in hashes.items() if _fits(record)})


def _encode(hashes: dict[str, tuple]) -> bytes:
    records = hashes.values()
    hexes = [record[5] for record in records]
    if hashes and set(map(len, hexes)) != {2 * DIGEST}:
        raise ValueError("a digest that is not 64 characters")
    digests = bytes.fromhex("".join(hexes))  # ValueError for anything but hex digits and spaces
    if len(digests) != DIGEST * len(hashes):  # spaces
        raise ValueError("a digest that is not hex")
    columns = [array(code, [record[i] for record in records]).tobytes() for i, code in enumerate(TYPECODES)]
    return marshal.dumps((FORMAT, "\0".join(hashes), *columns, digests))


def _fits(record) -> bool:
    try:
        for i, code in enumerate(TYPECODES):
            array(code, [record[i]])
    except (OverflowError, TypeError, IndexError):
        return False
    return len(record) == 6 and type(record[5]) is str and HEX.fullmatch(record[5]) is not None


def load(path: Path, like: "Manifest | None" = None) -> dict[str, tuple]:
    """The records `encode` wrote to `path` (or a dict, as versions before 2026-12-07 wrote them). Raises
    OSError when the file cannot be read, ValueError when it is not one of those."""
    try:
        with open(path, "rb") as file:
            saved = marshal.load(file)  # read as parsed: not the whole file next to its values (a few big values)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"not a hash cache: {exc}") from exc
    if type(saved) is dict:
        return saved
    if not (type(saved) is tuple and len(saved) == 8 and saved[0] == FORMAT and type(saved[1]) is str
            and all(type(raw) is bytes for raw in saved[2:])):
        raise ValueError("not a hash cache")
    _, paths, *packed, digests = saved
    del saved
    try:
        columns = [memoryview(raw).cast(code) for code, raw in zip(TYPECODES, packed)]  # read in place
    except TypeError as exc:  # a length that is not a whole number of values
        raise ValueError(f"not a hash cache: {exc}") from exc
    count = len(columns[0])
    if not (all(len(c) == count for c in columns) and len(digests) == DIGEST * count
            and (paths.count("\0") + 1 if paths else 0) == count):
        raise ValueError("columns of different lengths")
    get = (like.entries if like is not None else {}).get
    records: dict[str, tuple] = {}
    start, same_dev = 0, None
    for i, (dev, ino, size, mtime, ctime) in enumerate(zip(*columns)):
        end = paths.find("\0", start)
        path = paths[start:end] if end >= 0 else paths[start:]
        start = end + 1
        if dev == same_dev:
            dev = same_dev  # one object for the one device nearly every record has
        else:
            same_dev = dev
        digest = digests[DIGEST * i:DIGEST * (i + 1)].hex()
        entry = get(path)
        if entry is not None and entry.hash == digest and entry.size == size and entry.mtime_ns == mtime:
            records[entry.path] = (dev, ino, entry.size, entry.mtime_ns, ctime, entry.hash)
        else:
            records[path] = (dev, ino, size, mtime, ctime, digest)
    return records
