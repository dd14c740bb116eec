"""One file across generations: its versions (who or which job wrote each), a text diff between
two of them, and restoring one version as a new generation (the rest of the volume untouched)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..engine.manifest import FILE, Entry, Manifest, diff
from ..exceptions import Conflict, InvalidPath, NotFound
from ..models import Volume, VolumeCommit
from ..storage.keys import safe_relpath
from . import files

MAX_VERSIONS = 100
DIFF_MAX_BYTES = 256 * 1024


@dataclass
class Version:
    generation: int  # the generation that wrote this content
    entry: Entry
    commit: VolumeCommit | None  # None once retention dropped that generation's row


def _older(volume: Volume, generation: int, path: str, commits: dict[int, VolumeCommit]) -> Entry | None:
    """The entry at `path` just before `generation` (None: absent, or that history is not kept)."""
    commit = commits.get(generation)
    if commit is None or not commit.parent:
        return None
    try:
        return files.manifest_of(volume, commit.parent).entries.get(path)
    except NotFound:
        return None


def file_versions(volume: Volume, path: str, limit: int = MAX_VERSIONS) -> list[Version]:
    """The versions of a file, newest first, back to its creation or the oldest kept generation.

    Each entry names the generation that last changed it, so one manifest is read per version;
    entries of old manifests without that number are found by stepping back one generation."""
    path = safe_relpath(path)
    entry = files.manifest_of(volume).entries.get(path)
    if entry is None:
        raise NotFound(f"{path!r} does not exist in volume {volume.name!r}")
    if entry.type != FILE:
        raise InvalidPath(f"{path!r} is a {entry.type}; history is kept per file")
    commits = {c.generation: c for c in VolumeCommit.objects.filter(volume=volume).select_related("user", "job")}
    versions: list[Version] = []
    at = volume.generation
    while entry is not None and entry.type == FILE and len(versions) < limit:
        written = entry.gen if 0 < entry.gen <= at else None
        if written is None:
            written = at
            while (older := _older(volume, written, path, commits)) is not None and older.same_content(entry):
                written = commits[written].parent
        versions.append(Version(written, entry, commits.get(written)))
        entry = _older(volume, written, path, commits)
        at = commits[written].parent if written in commits else 0
    return versions


def _text(volume: Volume, entry: Entry) -> str | None:
    if entry.size > DIFF_MAX_BYTES:
        return None
    data = b"".join(files.open_file(volume, entry)) if entry.size else b""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def version_diff(volume: Volume, path: str, old: Entry | None, new: Entry) -> tuple[list[tuple[str, str]], str]:
    """Lines of a unified diff as (kind, text) with kind add/del/hunk/ctx, or a reason there is none."""
    new_text = _text(volume, new)
    old_text = "" if old is None else _text(volume, old)
    if new_text is None or old_text is None:
        return [], f"no text diff: binary or over {DIFF_MAX_BYTES // 1024} KB"
    lines = []
    for line in difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), lineterm="", n=3):
        if line.startswith(("+++", "---")):
            continue
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        lines.append((kind, line))
    return lines, "" if lines else "the contents are the same"


def file_version_restore(volume: Volume, path: str, generation: int, user=None) -> int:
    """Make a kept version of one file the current one, as a new generation; nothing else changes."""
    path = safe_relpath(path)
    old = files.entry_at(volume, path, generation)
    if old.type != FILE:
        raise InvalidPath(f"{path!r} was a {old.type} in generation {generation}, not a file")
    with files._leased(volume, user) as (lease, remote, base):
        if remote.missing_blobs(lease, {old.hash}):
            raise NotFound(f"that version of {path!r} can no longer be restored: its content was collected")
        current = base.entries.get(path)
        if current is not None and current.type != FILE:
            raise Conflict(f"{path!r} is a {current.type} now; move or delete it first")
        new = Manifest(dict(base.entries))
        files._ensure_parents(new, path)
        new.entries[path] = old._replace(mtime_ns=files._now_ns())
        return files._commit(lease, remote, base, new, f"restore {path} from generation {generation}"[:300])


@dataclass(frozen=True)
class GenerationChanges:
    """What one generation changed against its parent, each list sorted by path."""

    added: list[Entry]
    changed: list[Entry]
    deleted: list[Entry]
    parent_missing: bool  # the parent's manifest is gone (pruned): everything shows as added


def generation_changes(volume: Volume, commit: VolumeCommit) -> GenerationChanges:
    """The entries `commit` added, changed and deleted against its parent generation."""
    new = files.manifest_of(volume, commit.generation)
    base, parent_missing = Manifest(), False
    if commit.parent:
        try:
            base = files.manifest_of(volume, commit.parent)
        except NotFound:
            parent_missing = True
    added, changed, deleted = diff(base, new)
    key = lambda e: e.path  # noqa: E731
    return GenerationChanges(sorted(added, key=key), sorted(changed, key=key), sorted(deleted, key=key),
                             parent_missing)
