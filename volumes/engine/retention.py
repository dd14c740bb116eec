"""Which generations history keeps, and what the kept history costs in storage.

A generation is kept while it is one of the last VOLUMES_HISTORY_KEEP_GENERATIONS and younger than
VOLUMES_HISTORY_KEEP_DAYS days; the current generation always. GC prunes the rest (and then their
blobs). What history costs counts against the volume's cap and the workspace's quota.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from .. import conf


class CommitFigures(Protocol):
    generation: int
    created_at: datetime
    size_bytes: int
    blob_bytes_added: int


C = TypeVar("C", bound=CommitFigures)


def kept(commits: list[C], current_generation: int, now: datetime) -> list[C]:
    """The commits history keeps, newest first."""
    keep_n, keep_days = int(conf.get("HISTORY_KEEP_GENERATIONS")), float(conf.get("HISTORY_KEEP_DAYS"))
    cutoff = now - timedelta(days=keep_days)
    ordered = sorted(commits, key=lambda c: c.generation, reverse=True)
    return [c for i, c in enumerate(ordered)
            if c.generation == current_generation or (i < keep_n and c.created_at >= cutoff)]


def stored_bytes(kept_commits: list[C]) -> int:
    """Bytes of blobs the kept generations hold: all of the oldest one's files, plus what each later
    generation added over its parent (an upper bound: content that came back is counted again)."""
    if not kept_commits:
        return 0
    ordered = sorted(kept_commits, key=lambda c: c.generation)
    return ordered[0].size_bytes + sum(c.blob_bytes_added for c in ordered[1:])
