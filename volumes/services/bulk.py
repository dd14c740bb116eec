"""Writes on several entries at once (the file browser's selection), each one generation, and
saving an edited text file only if nobody changed it since it was opened."""
from __future__ import annotations

import io
import posixpath

from ..engine.manifest import Manifest
from ..exceptions import Conflict, InvalidPath, NotFound
from ..models import Volume
from ..storage.keys import safe_relpath
from . import files

MAX_SELECTION = 1000


def _selection(paths: list[str]) -> list[str]:
    if not paths:
        raise InvalidPath("select one or more entries first")
    if len(paths) > MAX_SELECTION:
        raise InvalidPath(f"at most {MAX_SELECTION} entries at once")
    clean = sorted({safe_relpath(p) for p in paths})
    # A folder and something inside it: the folder covers both.
    return [p for p in clean if not any(p.startswith(q + "/") for q in clean if q != p)]


def entries_delete(volume: Volume, paths: list[str], user=None) -> int:
    """Delete files, links and folders (with what they hold) as one generation."""
    chosen = _selection(paths)
    with files._leased(volume, user) as (lease, remote, base):
        missing = [p for p in chosen if p not in base.entries]
        if missing:
            raise NotFound(f"{missing[0]!r} does not exist in volume {volume.name!r} (the list may be stale)")
        doomed = {p for c in chosen for p in files._subtree(base, c)}
        new = Manifest({p: e for p, e in base.entries.items() if p not in doomed})
        label = ", ".join(chosen[:3]) + (f" and {len(chosen) - 3} more" if len(chosen) > 3 else "")
        return files._commit(lease, remote, base, new, f"delete {label}"[:300])


def entries_move(volume: Volume, paths: list[str], folder: str, user=None) -> int:
    """Move entries into `folder` (created if missing; the root when empty), as one generation."""
    chosen = _selection(paths)
    folder = safe_relpath(folder) if folder.strip("/") else ""
    with files._leased(volume, user) as (lease, remote, base):
        new = Manifest(dict(base.entries))
        if folder:
            files._ensure_parents(new, folder + "/x")
        for src in chosen:
            if src not in base.entries:
                raise NotFound(f"{src!r} does not exist in volume {volume.name!r} (the list may be stale)")
            dst = posixpath.join(folder, posixpath.basename(src)) if folder else posixpath.basename(src)
            if folder == src or folder.startswith(src + "/"):
                raise InvalidPath(f"cannot move {src!r} into itself")
            if dst == src:
                continue
            if dst in new.entries:
                raise Conflict(f"{dst!r} already exists; rename one of them first")
            for p in files._subtree(base, src):
                new.entries.pop(p, None)
                target = dst + p[len(src):]
                new.entries[target] = base.entries[p]._replace(path=target)
        return files._commit(lease, remote, base, new, f"move {len(chosen)} entries to {folder or '/'}"[:300])


def text_save(volume: Volume, path: str, text: str, expected_hash: str, user=None) -> int:
    """Save an edited text file, refusing if it changed since the editor opened (expected_hash)."""
    return files.file_put(volume, path, io.BytesIO(text.encode("utf-8")), user=user, replacing=expected_hash)
