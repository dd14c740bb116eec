"""A worker's local cache of volume trees, with a stat-keyed hash cache and LRU eviction.

Layout of one cached volume, `<cache>/<workspace>/<volume>/`:
  tree/           the files, mounted into jobs
  staging/        downloads in progress (same filesystem, so a rename moves them in)
  manifest.json   the manifest `state.json` names, as last synced
  hashes.json     path -> [dev, ino, size, mtime_ns, ctime_ns, sha256]
  lock            flock'ed while a job uses the volume; eviction skips locked volumes
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .manifest import Manifest

StatKey = tuple[int, int, int, int, int]


class CachedVolume:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = root / "tree"
        self.staging = root / "staging"
        self._state = root / "state.json"
        self._manifest = root / "manifest.json"
        self._hashes = root / "hashes.json"

    def prepare(self) -> None:
        self.tree.mkdir(parents=True, exist_ok=True)
        if self.staging.exists():
            shutil.rmtree(self.staging)  # leftovers of a killed pull
        self.staging.mkdir(parents=True)

    @contextmanager
    def in_use(self) -> Iterator["CachedVolume"]:
        """Hold the volume's cache for one job; blocks while another job on this machine has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                os.utime(self.root / "lock")  # LRU timestamp
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # The synced state: which manifest the local manifest.json copy is.
    def synced_manifest(self, manifest_key: str) -> Manifest | None:
        try:
            state = json.loads(self._state.read_text())
            if state.get("manifest_key") != manifest_key:
                return None
            return Manifest.from_json(self._manifest.read_bytes(), trusted=True)  # written by save_synced
        except (OSError, ValueError, Exception):  # a damaged cache is a cache miss
            return None

    def save_synced(self, manifest_key: str, manifest: Manifest) -> None:
        self._forget_state()
        _write_atomic(self._manifest, manifest.to_json())
        _write_atomic(self._state, json.dumps({"manifest_key": manifest_key}).encode())

    def _forget_state(self) -> None:
        try:
            self._state.unlink()
        except FileNotFoundError:
            pass

    def load_hashes(self) -> dict[str, list]:
        try:
            return json.loads(self._hashes.read_bytes())
        except (OSError, ValueError):
            return {}

    def save_hashes(self, hashes: dict[str, list]) -> None:
        _write_atomic(self._hashes, json.dumps(hashes, separators=(",", ":")).encode())

    def disk_usage(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def last_used(self) -> float:
        try:
            return os.stat(self.root / "lock").st_mtime
        except OSError:
            return 0.0


class WorkerCache:
    """All cached volumes of one worker, capped at `max_bytes` by LRU eviction."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def volume(self, workspace_id: str, volume_name: str) -> CachedVolume:
        # Names are unique without regard to case, so the cache folder is lower-cased too.
        return CachedVolume(self.root / workspace_id / volume_name.lower())

    def cached_volumes(self) -> list[CachedVolume]:
        if not self.root.exists():
            return []
        return [CachedVolume(d) for ws in self.root.iterdir() if ws.is_dir() for d in ws.iterdir() if d.is_dir()]

    def evict(self, reserve: int = 0) -> list[Path]:
        """Remove least recently used volumes not in use until the cache fits under the cap."""
        volumes = sorted(self.cached_volumes(), key=lambda v: v.last_used())
        usage = {v.root: v.disk_usage() for v in volumes}
        total = sum(usage.values()) + reserve
        evicted = []
        for vol in volumes:
            if total <= self.max_bytes:
                break
            with open(vol.root / "lock", "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a job is using it
                try:
                    for child in vol.root.iterdir():
                        if child.name != "lock":
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            total -= usage[vol.root]
            evicted.append(vol.root)
        return evicted


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
