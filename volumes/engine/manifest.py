"""The file list of one volume generation: paths, sizes, hashes, modes, symlinks, folders.

A manifest is the only description of a generation; it is written once to storage
and never changed. Loading one validates every path, so a forged or damaged
manifest can never make a pull write outside its cache root.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable

from ..exceptions import IntegrityError, InvalidPath
from ..storage.keys import safe_relpath

FILE, LINK, DIR = "file", "link", "dir"
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
FORMAT = 1


@dataclass(frozen=True)
class Entry:
    path: str
    type: str
    size: int = 0
    hash: str = ""
    mode: int = 0o644
    mtime_ns: int = 0
    target: str = ""
    gen: int = 0  # the generation that last changed this entry

    def same_content(self, other: "Entry") -> bool:
        """True when a pull or push has nothing to transfer or recreate for this entry."""
        return (
            self.type == other.type
            and self.size == other.size
            and self.hash == other.hash
            and self.target == other.target
            and self.mode == other.mode
        )


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)
    generation: int = 0

    @property
    def files(self) -> Iterable[Entry]:
        return (e for e in self.entries.values() if e.type == FILE)

    @property
    def size_bytes(self) -> int:
        return sum(e.size for e in self.files)

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries.values() if e.type != DIR)

    def hashes(self) -> set[str]:
        return {e.hash for e in self.files}

    def to_json(self) -> bytes:
        rows = [dict(vars(e)) for e in sorted(self.entries.values(), key=lambda e: e.path)]
        doc = {"format": FORMAT, "generation": self.generation, "entries": rows}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, trusted: bool = False) -> "Manifest":
        """Parse and validate; `trusted` skips validation for our own local copy (the worker cache)."""
        try:
            doc = json.loads(data.decode("utf-8"))
            rows = doc["entries"]
            manifest = cls({}, int(doc.get("generation", 0)))
            for row in rows:
                entry = Entry(**row)
                manifest.entries[entry.path] = entry
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"the manifest is damaged ({exc.__class__.__name__}: {exc})") from exc
        if not trusted:
            manifest.validate()
        return manifest

    def validate(self) -> None:
        """Refuse anything a pull could not restore safely beneath its root."""
        for path, entry in self.entries.items():
            if not all(isinstance(v, str) for v in (entry.path, entry.type, entry.hash, entry.target)) or not all(
                type(v) is int for v in (entry.size, entry.mode, entry.mtime_ns, entry.gen)
            ):
                raise IntegrityError(f"the manifest entry {str(path)[:200]!r} has a field of the wrong type")
            if not (0 <= entry.mode <= 0o7777 and abs(entry.mtime_ns) < 2**63 and entry.gen >= 0):
                raise IntegrityError(f"the manifest entry {path[:200]!r} has a mode, time or generation out of range")
            try:
                clean = safe_relpath(path)
            except InvalidPath as exc:
                raise IntegrityError(f"the manifest has an unsafe path {path!r}: {exc}") from exc
            if clean != path or entry.path != path:
                raise IntegrityError(f"the manifest has a non-normalised path {path!r}")
            if entry.type not in (FILE, LINK, DIR):
                raise IntegrityError(f"the manifest entry {path!r} has unknown type {entry.type!r}")
            if entry.type == FILE and (not HASH_RE.match(entry.hash) or entry.size < 0):
                raise IntegrityError(f"the manifest entry {path!r} has a bad hash or size")
            if entry.type == LINK and ("\x00" in entry.target or not entry.target):
                raise IntegrityError(f"the manifest entry {path!r} has a bad link target")
            parent = path.rpartition("/")[0]
            if parent and (parent not in self.entries or self.entries[parent].type != DIR):
                raise IntegrityError(f"the manifest entry {path!r} lacks its parent folder {parent!r}")


def diff(base: Manifest, new: Manifest) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """(added, changed, deleted) entries going from base to new."""
    added = [e for p, e in new.entries.items() if p not in base.entries]
    changed = [e for p, e in new.entries.items() if p in base.entries and not e.same_content(base.entries[p])]
    deleted = [e for p, e in base.entries.items() if p not in new.entries]
    return added, changed, deleted
