"""Manifests in storage, in parts that generations share, so a commit's cost follows its change.

A stored manifest (format 2) is a small document naming its top-level parts in order:

    {"format": 2, "generation": 7, "depth": 2, "parts": ["<sha256>", ...]}

Leaf parts are runs of consecutive entries (sorted by path); with depth > 1, index parts above them
list the digests of the level below (a tree, so the document stays small in any volume). Every
part is stored once, content-addressed, under `<volume prefix>manifests/parts/<sha256>.json`.
Boundaries depend only on content (a run ends after a path, or digest, whose hash is 0 modulo
PART_TARGET, or at MAX_PART items), so changing one file rewrites one part per level and the
document; every other part is the parent's. Readers assemble the
classic format-1 document; format-1 manifests written before parts existed read as they are.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import operator
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..exceptions import BlobMissing, IntegrityError, VolumesError
from ..storage.base import ObjectStore
from .manifest import PERMISSIONS, REPAIR_HINT, Entry, Manifest, masked

FORMAT = 2
PART_TARGET = 64  # items per part on average (about 12 KB of entries)
MAX_PART = 4 * PART_TARGET
THREADS = 8
HEX = re.compile(r"[0-9a-f]{64}")
_PATH = operator.itemgetter(0)  # an entry's path


def part_key(prefix: str, digest: str) -> str:
    return f"{prefix}manifests/parts/{digest}.json"


def prefix_of(key: str) -> str:
    """The volume prefix of a manifest key (`<prefix>manifests/<name>`)."""
    return key[:key.rindex("manifests/")]


def _boundary(key: str) -> bool:
    """Whether a run ends after `key`: any fixed, well-spread function of the key alone will do (readers never
    ask); CRC-32 is five times cheaper than the SHA-256 it replaced (a commit asks it for every entry it encodes)."""
    return zlib.crc32(key.encode("utf-8")) % PART_TARGET == 0


def _chunk(items: list[bytes], keys: list[str]) -> list[bytes]:
    """Runs of items as JSON arrays; a run ends after an item whose key hits a boundary (or at MAX_PART),
    so unchanged runs come out byte for byte the same in every generation."""
    parts, run = [], []
    for item, key in zip(items, keys):
        run.append(item)
        if _boundary(key) or len(run) >= MAX_PART:
            parts.append(b"[" + b",".join(run) + b"]")
            run = []
    if run:
        parts.append(b"[" + b",".join(run) + b"]")
    return parts


def _leaves(ordered: list[Entry], base: Manifest | None, known: set[str] | frozenset,
            stored_part: Callable[[str], bytes | None] | None = None) -> tuple[list[str], dict, list]:
    """(leaf digests in order, new leaf parts by digest, the runs for Manifest.runs). A run of the base that is
    stored (`known`) and whose entries are all still the base's own objects is named by its digest without
    encoding it again: the same entries in the same run give the same bytes. A run of the base whose paths are
    all still there but some content changed is the same run with new rows: no boundary is looked for, and the
    rows of unchanged entries are taken from the stored part when `stored_part(digest)` can read it cheaply (a
    local store), so only the changed entries are encoded. A run that ended only because the entries did (no
    boundary) is not reused, so the parts are exactly what a full split makes."""
    reusable = {run[0]: run for run in (base.runs or ()) if run[3] in known} if base is not None else {}
    old = base.entries if base is not None else {}
    digests: list[str] = []
    every: dict[str, bytes] = {}
    runs: list[tuple[str, str, int, str]] = []
    run: list[Entry] = []
    count, j = len(ordered), 0
    while j < count:
        entry = ordered[j]
        if not run and entry.path in reusable:
            first, last, n, digest = reusable[entry.path]
            same = ordered[j:j + n]
            if len(same) == n and same[-1].path == last:
                changed = [i for i, e in enumerate(same) if old.get(e.path) is not e]
                # The base holds exactly n paths from `first` to `last`: n of ours there, all the base's, are those.
                if not changed or all([e.path in old for e in same]):
                    if changed:
                        part = _rows_changed(same, changed, stored_part(digest) if stored_part else None)
                        digest = hashlib.sha256(part).hexdigest()
                        every[digest] = part
                    digests.append(digest)
                    runs.append((first, last, n, digest))
                    j += n
                    continue
        run.append(entry)
        j += 1
        ended = _boundary(entry.path) or len(run) >= MAX_PART
        if ended or j == count:
            part = _encoded(run)
            digest = hashlib.sha256(part).hexdigest()
            digests.append(digest)
            every[digest] = part
            if ended:
                runs.append((run[0].path, run[-1].path, len(run), digest))
            run = []
    return digests, every, runs


_ROW = b'{"path":"'  # how every encoded entry starts; inside a JSON string a quote is always escaped
_BETWEEN = b"}," + _ROW  # between two rows of a part


def _rows_changed(entries: list[Entry], changed: list[int], stored: bytes | None) -> bytes:
    """The part of `entries`, of which those at `changed` are not the base's own: the other rows as cut from
    `stored`, the base run's part, when it has one row for each; every row encoded when it is not at hand or
    not in that shape."""
    if stored is not None and stored.startswith(b"[" + _ROW) and stored.endswith(b"}]"):
        rows = stored[len(_ROW) + 1:-2].split(_BETWEEN)  # each without its first 9 bytes and its last
        if len(rows) == len(entries):
            for i in changed:
                rows[i] = encode_entry(entries[i])[len(_ROW):-1]
            return b"[" + _ROW + _BETWEEN.join(rows) + b"}]"
    return _encoded(entries)


def _encoded(entries: list[Entry]) -> bytes:
    """A leaf part: the entries' rows as a JSON array."""
    return b"[" + b",".join([encode_entry(e) for e in entries]) + b"]"


def encode_entry(entry: Entry) -> bytes:
    """The entry as compact JSON, byte for byte what json.dumps(ensure_ascii=False) writes (stored parts are
    shared between generations by digest): formatted directly when no text needs escaping, as almost
    every entry, which is several times faster than json.dumps."""
    path, kind, size, digest, mode, mtime_ns, target, gen = entry
    text = path + kind + digest + target
    if ('"' not in text and "\\" not in text and text.isprintable()
            and type(size) is int and type(mode) is int and type(mtime_ns) is int and type(gen) is int):
        return (f'{{"path":"{path}","type":"{kind}","size":{size},"hash":"{digest}","mode":{mode},'
                f'"mtime_ns":{mtime_ns},"target":"{target}","gen":{gen}}}').encode("utf-8")
    return json.dumps(entry._asdict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def split(manifest: Manifest, base: Manifest | None = None, known: set[str] | frozenset = frozenset(),
          stored_part: Callable[[str], bytes | None] | None = None) -> tuple[list[str], int, dict[str, bytes]]:
    """(top-level part digests, depth, the parts to store by digest). Leaf parts hold entry rows in path order;
    above them, index parts hold the digests of the level below, until at most PART_TARGET remain.
    With `base` (its `runs`) and `known` (its stored parts), runs it shares are not encoded nor returned;
    `stored_part(digest)`: a stored part's bytes where they are cheap to read (see _leaves). Sets `manifest.runs`."""
    ordered = sorted(manifest.entries.values(), key=_PATH)
    digests, every, manifest.runs = _leaves(ordered, base, known, stored_part)
    depth = 1
    while len(digests) > PART_TARGET:
        parts = _chunk([f'"{d}"'.encode() for d in digests], digests)
        digests = [hashlib.sha256(part).hexdigest() for part in parts]
        every.update(zip(digests, parts))
        depth += 1
    return digests, depth, every


def write(store: ObjectStore, key: str, manifest: Manifest, known: set[str] | frozenset = frozenset(),
          base: Manifest | None = None) -> int:
    """Store the manifest under `key` (create-only), writing only the parts storage lacks; `known`:
    digests of parts known to be stored (the base generation's, which GC keeps while we hold the
    lease), not even looked up; `base`: that generation, whose runs are reused (split). Returns the
    bytes written (document and new parts)."""
    prefix = prefix_of(key)

    def stored_part(digest: str) -> bytes | None:
        """A local store's part of the base, as stored (checked against its name); None (encode its rows) when it
        cannot be read."""
        try:
            part = store.get_bytes(part_key(prefix, digest))
        except VolumesError:
            return None
        return part if hashlib.sha256(part).hexdigest() == digest else None

    top, depth, every = split(manifest, base, known, stored_part if store.kind == "filesystem" else None)
    every = {d: p for d, p in every.items() if d not in known}
    written = 0

    def put(item: tuple[str, bytes]) -> int:
        digest, data = item
        if store.exists(part_key(prefix, digest)):
            return 0
        return len(data) if store.put_bytes(part_key(prefix, digest), data, create_only=True) else 0

    if store.kind == "filesystem":  # one flush for every new part, not an fsync each (100 took 0.1 s on ext4)
        with store.write_batch() as batch:
            for digest, data in every.items():
                if not store.exists(part_key(prefix, digest)):
                    batch.put_bytes(part_key(prefix, digest), data)
                    written += len(data)
    else:
        with ThreadPoolExecutor(THREADS) as pool:
            written = sum(pool.map(put, every.items()))
    doc = json.dumps({"format": FORMAT, "generation": manifest.generation, "depth": depth, "parts": top},
                     separators=(",", ":")).encode("utf-8")
    # False when the key exists: ours, if a retried write's first attempt had gone through.
    if not store.put_bytes(key, doc, create_only=True) and store.get_bytes(key) != doc:
        from ..exceptions import Conflict

        raise Conflict(f"manifest {key!r} already exists; nothing was committed, retry")
    return written + len(doc)


def _digests(value, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(d, str) and HEX.fullmatch(d) for d in value):
        raise IntegrityError(f"the manifest {key!r} names its parts wrongly; {REPAIR_HINT}")
    return value


def _fetch(store: ObjectStore, prefix: str, key: str, digest: str, salvage: bool) -> bytes:
    """A part's bytes, checked against its name; b"" for a missing or damaged one when salvaging."""
    try:
        part = store.get_bytes(part_key(prefix, digest))
    except BlobMissing as exc:
        if salvage:
            return b""
        raise IntegrityError(f"a part of manifest {key!r} is missing ({digest}); {REPAIR_HINT}") from exc
    return _checked(part, key, digest, salvage)


def _checked(part: bytes, key: str, digest: str, salvage: bool) -> bytes:
    if hashlib.sha256(part).hexdigest() != digest or part[:1] != b"[" or part[-1:] != b"]":
        if salvage:
            return b""
        raise IntegrityError(f"a part of manifest {key!r} is damaged ({digest}); {REPAIR_HINT}")
    return part


def _fetch_all(store: ObjectStore, key: str, digests: list[str], salvage: bool = False) -> list[bytes]:
    """The parts of manifest `key` named by `digests`, in order, fetched on THREADS threads (see _fetch), or in
    batches where the store reads many objects a request (`get_many`: an agent's reader of the server's parts)."""
    prefix = prefix_of(key)
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        parts = get_many([part_key(prefix, d) for d in digests])
        return [_checked(part, key, d, salvage) for d, part in zip(digests, parts, strict=True)]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda d: _fetch(store, prefix, key, d, salvage), digests))


def fetch_parts(store: ObjectStore, key: str, digests: list[str]) -> list[bytes]:
    """The parts of the stored manifest `key` named by `digests`, in order, each checked against its name."""
    return _fetch_all(store, key, digests)


def pack_parts(parts: list[bytes]) -> bytes:
    """Parts in one body, each after its length in ASCII digits and a newline (how the server sends an agent the
    parts it asks for)."""
    return b"".join(b"%d\n%s" % (len(part), part) for part in parts)


def unpack_parts(data: bytes, count: int) -> list[bytes]:
    """The `count` parts pack_parts put in `data` (their bytes are checked against their names by the reader)."""
    parts, at = [], 0
    try:
        for _ in range(count):
            end = data.index(b"\n", at)
            size = int(data[at:end])
            if size < 0 or end + 1 + size > len(data):
                raise ValueError("a part longer than the body")
            parts.append(data[end + 1:end + 1 + size])
            at = end + 1 + size
    except ValueError as exc:
        raise IntegrityError(f"the server's answer of {count} manifest parts is cut or damaged ({exc}); retry") from exc
    if at != len(data):
        raise IntegrityError(f"the server answered more than the {count} manifest parts asked for; retry")
    return parts


def _levels(store: ObjectStore, key: str, salvage: bool = False, doc: dict | None = None
            ) -> tuple[dict, list[str], list[str]]:
    """(document, leaf part digests, index part digests) of a format-2 manifest; `doc`: its document, if read."""
    doc = _document(store.get_bytes(key)) if doc is None else doc
    digests = _digests(doc.get("parts"), key)
    depth = doc.get("depth", 1)
    if not isinstance(depth, int) or not 1 <= depth <= 8:
        raise IntegrityError(f"the manifest {key!r} is damaged (depth {depth!r}); {REPAIR_HINT}")
    index: list[str] = []
    for _ in range(depth - 1):
        index += digests
        parts = _fetch_all(store, key, digests, salvage)
        digests = [d for part in parts if part for d in _digests(_loads(part, key), key)]
    return doc, digests, index


def _loads(part: bytes, key: str):
    try:
        return json.loads(part)
    except ValueError as exc:
        raise IntegrityError(f"a part of manifest {key!r} is damaged; {REPAIR_HINT}") from exc


def part_digests(store: ObjectStore, key: str) -> set[str]:
    """Every part a stored manifest uses, by digest (none for a format-1 manifest); reads only the
    document and its index parts."""
    if _document(store.get_bytes(key)).get("format") != FORMAT:
        return set()
    _, leaves, index = _levels(store, key, salvage=True)  # a damaged tree: keep what can be named
    return set(leaves + index)


def part_keys(store: ObjectStore, key: str) -> set[str]:
    """Every part key a stored manifest uses (none for a format-1 manifest)."""
    return {part_key(prefix_of(key), d) for d in part_digests(store, key)}


def _document(data: bytes) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        return doc
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"the manifest is damaged ({exc.__class__.__name__}: {exc}); {REPAIR_HINT}") from exc


def read_bytes(store: ObjectStore, key: str, salvage: bool = False) -> bytes:
    """The manifest at `key` as one format-1 document (parts fetched, each checked against its name).
    salvage: leave out parts that are missing or damaged instead of failing (for a repair)."""
    data = store.get_bytes(key)
    doc = _document(data)
    if doc.get("format") != FORMAT:
        return data
    doc, leaves, _ = _levels(store, key, salvage, doc)
    rows = [part[1:-1] for part in _fetch_all(store, key, leaves, salvage) if len(part) > 2]
    generation = doc.get("generation", 0)
    generation = generation if isinstance(generation, int) and generation >= 0 else 0
    return b'{"format":1,"generation":%d,"entries":[' % generation + b",".join(rows) + b"]}"


def read(store: ObjectStore, key: str, like: Manifest | None = None) -> Manifest:
    """The manifest at `key`, checked, with its `runs` (the leaves a commit after it can reuse, see _leaves).
    `like`: a generation this worker holds. A leaf part that `like`'s entries make byte for byte (the same
    digest) is taken from `like`, as its own entry objects, instead of fetched: a pull after another worker's
    commit fetches only the parts that commit wrote, and sees the rest unchanged at once (diff)."""
    data = store.get_bytes(key)
    doc = _document(data)
    if doc.get("format") != FORMAT:
        return Manifest.from_json(data, like=like)
    doc, leaves, _ = _levels(store, key, doc=doc)
    held = _held_leaves(like, set(leaves)) if like is not None and like.entries else {}
    wanted = [d for d in dict.fromkeys(leaves) if d not in held]
    fetched = dict(zip(wanted, _fetch_all(store, key, wanted)))
    entries: dict[str, Entry] = {}
    runs = []
    try:
        for digest in leaves:
            run = held.get(digest) or [Entry(**row) for row in json.loads(fetched[digest])]
            for entry in run:
                entries[entry.path] = entry
            if run and (_boundary(run[-1].path) or len(run) >= MAX_PART):
                runs.append((run[0].path, run[-1].path, len(run), digest))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"the manifest is damaged ({exc.__class__.__name__}: {exc}); {REPAIR_HINT}") from exc
    generation = doc.get("generation", 0)
    manifest = Manifest(entries, generation if isinstance(generation, int) and generation >= 0 else 0)
    manifest.share(like)  # in a part that changed, its other entries
    try:
        manifest.validate(like)
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}; {REPAIR_HINT}") from exc
    odd = [path for path, entry in entries.items() if entry.mode & ~PERMISSIONS]
    if odd:  # readers keep permission bits only; a run with such a row is no longer its part, byte for byte
        manifest.entries = {path: masked(entry) for path, entry in entries.items()}
        firsts = [run[0] for run in runs]
        gone = {bisect.bisect_right(firsts, path) - 1 for path in odd}
        runs = [run for i, run in enumerate(runs) if i not in gone]
    manifest.runs = runs
    return manifest


def _held_leaves(like: Manifest, leaves: set[str]) -> dict[str, list[Entry]]:
    """The runs of `like` (Manifest.runs) that are among `leaves`, by digest: their entries, `like`'s own objects.
    Each is encoded again to prove it: a digest names the exact bytes of its rows."""
    wanted = [run for run in like.runs or () if run[3] in leaves]
    if not wanted:
        return {}
    ordered = sorted(like.entries.values(), key=_PATH)
    paths = [entry.path for entry in ordered]
    held = {}
    for first, last, n, digest in wanted:
        start = bisect.bisect_left(paths, first)
        run = ordered[start:start + n]
        if len(run) == n and run[-1].path == last and hashlib.sha256(_encoded(run)).hexdigest() == digest:
            held[digest] = run
    return held
