"""`volume get` and `volume put` on either backend: which files go where. A download lands under a
temporary name first, so a failed one leaves no half file; links are recreated, never followed."""
from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Callable

from volumes.storage.keys import clean_path
from volumes.exceptions import InvalidPath, NotFound, VolumesError

Advance = Callable[[int], None]
# Shows the progress of `total` bytes under a label; yields the function that advances it.
ProgressBar = Callable[[int, str], AbstractContextManager[Advance]]
CHUNK = 1024 * 1024


class Counting:
    """A file wrapper that reports bytes read, with a length so HTTP uploads send Content-Length."""

    def __init__(self, fh: BinaryIO, size: int, advance: Advance) -> None:
        self.fh, self.size, self.advance = fh, size, advance

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(n)
        self.advance(len(chunk))
        return chunk


def get(backend, volume: str, path: str, dest: str, progress: ProgressBar, stdout: BinaryIO) -> str:
    """Download a file or folder of `volume` to `dest` (a file or folder; "-": standard output);
    returns what was done, in words ("" for standard output)."""
    path = clean_path(path.rstrip("/"), allow_root=True)
    entry = backend.entry(volume, path) if path else {"type": "dir", "path": ""}
    if entry["type"] == "link":
        raise InvalidPath(f"{path!r} is a symlink to {entry['target']!r}; links are never followed")
    if dest == "-":
        if entry["type"] != "file":
            raise InvalidPath("only a single file can be written to standard output")
        backend.download(volume, path, stdout, lambda n: None)
        stdout.flush()
        return ""
    if entry["type"] == "file":
        target = Path(dest or path.rpartition("/")[2])
        if target.is_dir():
            target = target / path.rpartition("/")[2]
        _fetch(backend, volume, [(path, target, entry["size"])], progress)
        return f"downloaded {path} to {target}"
    root = Path(dest or (path.rpartition("/")[2] or volume))
    plan: list[tuple[str, Path, int]] = []
    _walk(backend, volume, path, root, plan)
    _fetch(backend, volume, plan, progress)
    return f"downloaded {len(plan)} files to {root}"


def _walk(backend, volume: str, folder: str, local: Path, plan: list) -> None:
    local.mkdir(parents=True, exist_ok=True)
    for entry in backend.folder(volume, folder):
        target = local / entry["name"]
        if entry["type"] == "dir":
            _walk(backend, volume, entry["path"], target, plan)
        elif entry["type"] == "link":
            if not target.exists() and not target.is_symlink():
                os.symlink(entry["target"], target)  # recreated as a link, never followed
        else:
            plan.append((entry["path"], target, entry["size"]))


def _fetch(backend, volume: str, plan: list[tuple[str, Path, int]], progress: ProgressBar) -> None:
    total = sum(size for *_, size in plan)
    with progress(total, f"get {volume}") as advance:
        for path, target, _ in plan:
            tmp = target.with_name(f".{target.name}.part")
            try:
                with open(tmp, "wb") as out:
                    backend.download(volume, path, out, advance)
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()


def put(backend, volume: str, local: str, path: str, progress: ProgressBar, skipped: Callable[[str], None]) -> str:
    """Upload a file, or a folder's regular files as one generation, to `path` in `volume`;
    `skipped` hears of every other kind of file. Returns what was done, in words."""
    source = Path(local)
    if not source.exists():
        raise NotFound(f"{local} does not exist")
    if source.is_file():
        dest = path + source.name if (not path or path.endswith("/")) else path
        plan = [(source, clean_path(dest))]
    elif source.is_dir():
        base = path.rstrip("/") if path else source.resolve().name
        plan = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                if full.is_symlink() or not full.is_file():
                    skipped(f"skipped {full}: only regular files are uploaded")
                    continue
                rel = full.relative_to(source).as_posix()
                plan.append((full, clean_path(f"{base}/{rel}" if base else rel)))
    else:
        raise InvalidPath(f"{local} is not a file or folder")
    total = sum(p.stat().st_size for p, _ in plan)
    with progress(total, f"put {volume}") as advance:
        if source.is_file():
            backend.upload(volume, plan[0][1], plan[0][0], advance)
            generation = None
        elif plan:
            generation = backend.upload_many(volume, plan, advance)  # one generation for the folder
        else:
            raise VolumesError(f"{local} holds no files to upload")
    at = f" (generation {generation})" if generation is not None else ""
    return f"uploaded {len(plan)} file{'s' if len(plan) != 1 else ''} to {volume}{at}"
