"""The known content of every generation of a sync-test volume, so a pulled tree can be compared
with exactly one generation (a mix of two is always visible: most files name their generation)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..engine.helpers import tree_listing

PARTS = 6
LINKS = {"latest": "generation.txt", "outside": "/etc/hostname"}  # links keep their text, even outside


def files_of(generation: int) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of the regular files of one generation."""
    files = {
        "keep.txt": (b"the same bytes in every generation\n", 0o644),
        "generation.txt": (f"{generation}\n".encode(), 0o644),
        "bin/run.sh": (f"#!/bin/sh\necho generation {generation}\n".encode(), 0o755),
        "sub/deep/notes.md": (f"notes of generation {generation}\n".encode() * 40, 0o644),
    }
    for i in range(PARTS):
        files[f"data/part-{i}.bin"] = (f"generation {generation} part {i}\n".encode() * 80, 0o644)
    if generation % 2:
        files["odd-only.txt"] = (f"only odd generations have me ({generation})\n".encode(), 0o600)
    return files


def write(tree: Path, generation: int) -> None:
    """Make `tree` hold exactly this generation (what a job would leave behind)."""
    for child in tree.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for path, (data, mode) in files_of(generation).items():
        full = tree / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        os.chmod(full, mode)
    for path, target in LINKS.items():
        os.symlink(target, tree / path)


def expected(generation: int) -> dict[str, tuple]:
    """What `listing` of a tree holding this generation returns (generation 0: empty)."""
    if generation == 0:
        return {}
    out: dict[str, tuple] = {path: ("link", target) for path, target in LINKS.items()}
    for path, (data, mode) in files_of(generation).items():
        out[path] = ("file", data, mode)
        parts = path.split("/")
        for depth in range(1, len(parts)):
            out["/".join(parts[:depth])] = ("dir",)
    return out


listing = tree_listing  # path -> ('file', bytes, mode) | ('link', target) | ('dir',), never following links
