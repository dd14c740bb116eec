"""A worker's local cache of volume trees, with a stat-keyed hash cache and LRU eviction.

Layout of one cached volume, `<cache>/<workspace>/<volume>/`:
  tree/           the files, mounted into jobs
  staging/        downloads in progress (same filesystem, so a rename moves them in)
  manifest.bin    the manifest `state.json` names, as last synced (marshal columns; rows, manifest.json before)
  hashes.bin      path -> [dev, ino, size, mtime_ns, ctime_ns, sha256] (columns, hashcache.py; hashes.json before)
  usage           bytes the volume takes on disk, recorded when the tree was last exactly a generation
  clean           "known clean": the tree is exactly the manifest state.json names (see CachedVolume.mark_clean)
  lock            flock'ed while a job uses the volume; eviction skips locked volumes

Readers' shared snapshots, `<cache>/.snapshots/<workspace>/<volume>/`:
  g<generation>-<key>/       one committed generation (laid out as above), filled once and never changed
                             after: jobs get it only through a kernel read-only mount
  g<generation>-<key>.lock   flock'ed shared by every job reading it, exclusively while it is filled or removed

One file over 500 lines on purpose: cached volumes, snapshots and the evicting cache share one layout and flock scheme.
"""
from __future__ import annotations

import ctypes
import fcntl
import gc
import hashlib
import json
import marshal
import os
import stat
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import IO, Callable, Iterator, Mapping

from . import hashcache
from .manifest import Manifest

StatKey = tuple[int, int, int, int, int]
PRIVATE = ".private"  # private copies: readers without a read-only mount, jobs whose volume's cache was held too long
SNAPSHOTS = ".snapshots"  # readers' shared read-only snapshots, one a generation


class CachedVolume:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = root / "tree"
        self.staging = root / "staging"
        self._state = root / "state.json"
        self._manifest = root / "manifest.bin"
        self._manifest_json = root / "manifest.json"  # the format before manifest.bin
        self._hashes = root / "hashes.bin"
        self._hashes_json = root / "hashes.json"  # the format before hashes.bin
        self._usage = root / "usage"
        self._clean = root / "clean"

    def prepare(self) -> None:
        _private(self.root)
        self.tree.mkdir(parents=True, exist_ok=True)
        remove_tree(self.staging)  # leftovers of a killed pull
        self.staging.mkdir(mode=0o700, parents=True)

    @contextmanager
    def in_use(self) -> Iterator["CachedVolume"]:
        """Hold the volume's cache for one job; blocks while another job on this machine has it."""
        lock = self.try_lock(None)
        assert lock is not None
        try:
            yield self
        finally:
            _unlock(lock)

    def try_lock(self, wait: float | None) -> IO | None:
        """The volume's cache lock (an open file; give it to `_unlock`), waiting at most `wait` seconds
        (None: for ever); None when another process still holds it then."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = open(self.root / "lock", "a+")
        try:
            if wait is None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            else:
                deadline, delay = time.monotonic() + wait, 0.01
                while True:
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            lock.close()
                            return None
                        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                        delay = min(delay * 2, 0.2)
            os.utime(self.root / "lock")  # LRU timestamp
            return lock
        except BaseException:
            lock.close()
            raise

    @contextmanager
    def if_free(self) -> Iterator["CachedVolume | None"]:
        """Hold the volume's cache for the block if no job of this machine has it now, else None."""
        lock = self.try_lock(0) if self.tree.is_dir() else None
        try:
            yield self if lock is not None else None
        finally:
            if lock is not None:
                _unlock(lock)

    def is_synced(self, manifest_key: str) -> bool:
        """Whether the tree was last made exactly that manifest (reads state.json only, no manifest)."""
        try:
            return json.loads(self._state.read_text()).get("manifest_key") == manifest_key
        except (OSError, ValueError, AttributeError):
            return False

    # The synced state: which manifest the local manifest.bin copy is. marshal columns, not JSON: 100,000
    # entries load in under a third of the time (the rows and the JSON copy of older versions are still read).
    def synced_manifest(self, manifest_key: str) -> Manifest | None:
        try:
            state = json.loads(self._state.read_text())
            if state.get("manifest_key") != manifest_key:
                return None
            key = _file_key(self._manifest)
            manifest = _memo_get(self._manifest, key)  # this process wrote or read it: no parse
            if manifest is None and key is not None:
                with bulk_load():
                    saved = marshal.loads(self._manifest.read_bytes())
                    if saved[0] == COLUMNS:  # as save_synced writes it
                        _, generation, columns, runs = saved
                        manifest = Manifest.from_columns(columns, generation)
                    else:
                        generation, rows, *runs = saved
                        manifest, runs = Manifest.from_rows(rows, generation), runs[0] if runs else None
                    del saved
                    manifest.runs = runs if _well_formed_runs(runs) else None
                manifest.entries = MappingProxyType(manifest.entries)
                _memo_put(self._manifest, key, manifest)
            elif manifest is None:
                manifest = Manifest.from_json(self._manifest_json.read_bytes(), trusted=True)
                manifest.entries = MappingProxyType(manifest.entries)
            # The memo's own entries, read-only (change a copy: 100,000 entries, a 5 MB dict less in every job).
            return Manifest(manifest.entries, manifest.generation, manifest.runs)
        except (OSError, ValueError, Exception):  # a damaged cache is a cache miss
            return None

    def last_synced(self) -> Manifest | None:
        """The manifest the tree was last synced as, whichever generation that is (None when unknown)."""
        try:
            key = json.loads(self._state.read_text()).get("manifest_key")
        except (OSError, ValueError, AttributeError):
            return None
        return self.synced_manifest(key) if isinstance(key, str) and key else None

    def save_synced(self, manifest_key: str, manifest: Manifest) -> None:
        self._forget_state()
        _write_atomic(self._manifest, marshal.dumps((COLUMNS, manifest.generation, manifest.to_columns(),
                                                     manifest.runs)))
        _memo_put(self._manifest, _file_key(self._manifest),
                  Manifest(MappingProxyType(dict(manifest.entries)), manifest.generation, manifest.runs))
        try:
            self._manifest_json.unlink()
        except FileNotFoundError:
            pass
        _write_atomic(self._state, json.dumps({"manifest_key": manifest_key}).encode())

    def _forget_state(self) -> None:
        try:
            self._state.unlink()
        except FileNotFoundError:
            pass

    def load_hashes(self, like: Manifest | None = None) -> Mapping[str, tuple]:
        """The hash cache, read-only (change a copy: `dict(...)`). Loaded against `like`, the manifest the tree was
        synced as, its records share that manifest's objects (hashcache.py). A worker process keeps the last ones
        it read or wrote in memory while their file is unchanged, and hands out that one (100,000 records: a copy
        would be 4 MB more)."""
        key = _file_key(self._hashes)
        if key is not None:
            known = _memo_get(self._hashes, key)
            if known is not None:
                return MappingProxyType(known)
            try:
                with bulk_load():
                    known = hashcache.load(self._hashes, like)
                if not isinstance(known, dict):
                    raise ValueError("not a dict")
            except (OSError, ValueError):
                return {}
            _memo_put(self._hashes, key, known)
            return MappingProxyType(known)
        try:
            return json.loads(self._hashes_json.read_bytes())
        except (OSError, ValueError):
            return {}

    def save_hashes(self, hashes: Mapping[str, tuple], like: Manifest | None = None) -> None:
        """`like`: the manifest the tree is synced as, or is about to be (its files' records go first, in its order,
        so the next load against it is a few passes in C: hashcache.py)."""
        _write_atomic(self._hashes, hashcache.encode(hashes, like))
        _memo_put(self._hashes, _file_key(self._hashes), dict(hashes))
        try:
            self._hashes_json.unlink()
        except FileNotFoundError:
            pass

    # "Known clean": written when a sync leaves the tree exactly the manifest state.json names (a commit, an
    # unchanged push, a pull no job follows), and taken away by the next pull before it changes anything or
    # hands the tree to a job, so a job or a crash never leaves it over a changed tree. A job's pull that finds
    # it trusts the tree instead of walking it. It names the tree folder too: a tree put there otherwise is not it.
    def mark_clean(self, manifest_key: str) -> None:
        st = os.lstat(self.tree)
        _write_atomic(self._clean, json.dumps({"manifest_key": manifest_key, "tree": [st.st_dev, st.st_ino]}).encode())

    def take_clean(self, manifest_key: str) -> bool:
        """Whether the tree was recorded clean as that manifest. The record is gone when this returns, also from
        the disk after a power cut (the folder is synced): whatever happens to the tree next, it cannot vouch."""
        try:
            record = json.loads(self._clean.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            record = None
        self.forget_clean()
        try:
            st = os.lstat(self.tree)
        except OSError:
            return False
        return (isinstance(record, dict) and record.get("manifest_key") == manifest_key
                and record.get("tree") == [st.st_dev, st.st_ino])

    def forget_clean(self) -> None:
        try:
            os.unlink(self._clean)
        except FileNotFoundError:
            return
        folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    # Disk usage without a walk: recorded when the tree is exactly a generation, forgotten before a job
    # can change it (a pull that hands the tree to a job, a crash mid-job: then eviction walks).
    def record_usage(self, manifest: Manifest) -> None:
        _write_atomic(self._usage, str(_tree_bytes(manifest)).encode())

    def forget_usage(self) -> None:
        try:
            self._usage.unlink()
        except FileNotFoundError:
            pass

    def usage_estimate(self) -> int:
        """disk_usage(), from the recorded tree size when there is one (the root's own files are stat'ed)."""
        try:
            tree = int(self._usage.read_bytes())
            with os.scandir(self.root) as it:
                return tree + sum(e.stat(follow_symlinks=False).st_size for e in it
                                  if not e.is_dir(follow_symlinks=False))
        except (OSError, ValueError):
            return self.disk_usage()

    def disk_usage(self) -> int:
        total, pending = 0, [os.fspath(self.root)]
        while pending:  # iterative: a job's very deep tree must not exhaust the stack
            try:
                with os.scandir(pending.pop()) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                pending.append(entry.path)
                            else:
                                total += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            pass
            except OSError:
                pass  # unreadable or gone: counted as empty
        return total

    def last_used(self) -> float:
        try:
            return os.stat(self.root / "lock").st_mtime
        except OSError:
            return 0.0


class Snapshot:
    """One generation of a volume shared by the readers of this worker (see the module docstring)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder  # <cache>/.snapshots/<workspace>/<volume>
        self.name = name
        self.volume = CachedVolume(folder / name)
        self.lock_path = folder / f"{name}.lock"

    @staticmethod
    def name_for(generation: int, manifest_key: str) -> str:
        return f"g{generation}-{hashlib.sha256(manifest_key.encode()).hexdigest()[:16]}"

    @property
    def generation(self) -> int:
        try:
            return int(self.name[1:].partition("-")[0])
        except ValueError:
            return -1

    def last_used(self) -> float:
        try:
            return os.stat(self.lock_path).st_mtime
        except OSError:
            return 0.0

    def remove_if_unused(self) -> bool:
        """Remove it (and fills a killed job left) unless a job reads or fills it now."""
        lock = _lock_file(self.lock_path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if lock is None:
            return False
        try:
            for leftover in self.folder.glob(f"{self.name}.fill-*"):
                remove_tree(leftover)
            remove_tree(self.volume.root)
            os.unlink(self.lock_path)  # waiters on the old file see it gone and retry (_lock_file)
        finally:
            _unlock(lock)
        return True


class WorkerCache:
    """All cached volumes of one worker, capped at `max_bytes` by LRU eviction."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def volume(self, workspace_id: str, volume_name: str) -> CachedVolume:
        # Names are unique without regard to case, so the cache folder is lower-cased too.
        _private(self.root)
        _private(self.root / workspace_id)
        return CachedVolume(self.root / workspace_id / volume_name.lower())

    @contextmanager
    def checkout(self, workspace_id: str, volume_name: str, wait: float,
                 log: Callable[[str], None] = lambda _: None) -> Iterator[CachedVolume]:
        """The volume's shared cache for one job, or, when another process of this machine has held it for
        `wait` seconds (stopped, hung in I/O, under a debugger), a private copy removed after the job:
        a job never waits without bound on a neighbour while it holds the volume's lease."""
        shared = self.volume(workspace_id, volume_name)
        lock = shared.try_lock(wait)
        if lock is not None:
            try:
                yield shared
            finally:
                _unlock(lock)
            return
        log(f"the cache of volume {volume_name} on this worker has been held by another process for over "
            f"{wait:g}s (a stopped or hung job?); this job uses a private copy")
        with self.private_copy(log) as private:
            yield private

    @contextmanager
    def private_copy(self, log: Callable[[str], None] = lambda _: None) -> Iterator[CachedVolume]:
        """A folder of this job alone, removed after it: a reader's pinned generation goes there, so it
        never waits for nor changes the volume's shared cache, which a writer on this machine may hold."""
        private = self.private_volume()
        lock = private.try_lock(None)  # uncontended; tells eviction the copy is in use
        try:
            yield private
        finally:
            try:
                remove_tree(private.root)
            except OSError as exc:  # never replaces the job's outcome; the next eviction retries
                log(f"warning: could not remove the private copy {private.root}: {exc}")
            finally:
                _unlock(lock)

    @contextmanager
    def snapshot(self, workspace_id: str, volume_name: str, generation: int, manifest_key: str,
                 fill: Callable[[CachedVolume], object], log: Callable[[str], None] = lambda _: None
                 ) -> Iterator[tuple[CachedVolume, object]]:
        """The shared read-only snapshot of one generation, held (shared) for the block: (its volume, what
        `fill` returned, or None when it was there already). The first reader of a generation fills it:
        `fill` makes a fresh CachedVolume that generation; it is then renamed into place. Concurrent first
        readers wait for that one fill and never see a half-filled snapshot. The job must only ever get it
        through a read-only mount."""
        folder = self.root / SNAPSHOTS / workspace_id / volume_name.lower()
        for level in (self.root, self.root / SNAPSHOTS, folder.parent, folder):
            _private(level)
        snap = Snapshot(folder, Snapshot.name_for(generation, manifest_key))
        filled, waited = None, False

        def take(operation: int) -> IO:
            nonlocal waited
            lock = _lock_file(snap.lock_path, operation | fcntl.LOCK_NB)
            if lock is None:
                if not waited:
                    log(f"waiting for another job of this worker to fill the snapshot of generation {generation} "
                        f"of {volume_name}")
                    waited = True
                lock = _lock_file(snap.lock_path, operation)
            return lock

        while True:
            lock = take(fcntl.LOCK_SH)
            if snap.volume.is_synced(manifest_key):
                break
            _unlock(lock)
            lock = take(fcntl.LOCK_EX)
            try:
                if not snap.volume.is_synced(manifest_key):
                    filled = self._fill(snap, fill)
            finally:
                _unlock(lock)  # then shared again (flock cannot downgrade atomically: eviction may come between)
        try:
            os.utime(snap.lock_path)  # LRU timestamp
            yield snap.volume, filled
        finally:
            _unlock(lock)

    @contextmanager
    def earlier_snapshot(self, workspace_id: str, volume_name: str, generation: int
                         ) -> Iterator[CachedVolume | None]:
        """The newest filled snapshot of the volume before `generation`, held (shared) for the block, if any
        is not being filled or removed right now: a seed for the next one."""
        folder = self.root / SNAPSHOTS / workspace_id / volume_name.lower()
        earlier = sorted((s for s in self.snapshots() if s.folder == folder and s.generation < generation),
                         key=lambda s: s.generation, reverse=True)
        for snap in earlier:
            lock = _lock_file(snap.lock_path, fcntl.LOCK_SH | fcntl.LOCK_NB)
            if lock is None:
                continue
            try:
                if snap.volume.tree.is_dir():
                    yield snap.volume
                    return
            finally:
                _unlock(lock)
        yield None

    @staticmethod
    def _fill(snap: Snapshot, fill: Callable[[CachedVolume], object]) -> object:
        remove_tree(snap.volume.root)  # a damaged one (its state.json names another manifest, or none)
        for leftover in snap.folder.glob(f"{snap.name}.fill-*"):  # of a killed fill: we hold the lock
            remove_tree(leftover)
        scratch = CachedVolume(snap.folder / f"{snap.name}.fill-{uuid.uuid4().hex}")
        try:
            scratch.root.mkdir(mode=0o700)
            result = fill(scratch)
            os.rename(scratch.root, snap.volume.root)  # whole, or not there
        except BaseException:
            remove_tree(scratch.root)
            raise
        return result

    def snapshots(self) -> list[Snapshot]:
        found = []
        for ws in _folders(self.root / SNAPSHOTS):
            for folder in _folders(ws):
                names = {p.name[:-len(".lock")] for p in folder.glob("g*.lock")}
                names |= {p.name for p in _folders(folder) if not p.name.partition(".")[1]}
                found += [Snapshot(folder, name) for name in sorted(names)]
        return found

    def private_volume(self) -> CachedVolume:
        _private(self.root / PRIVATE)
        root = self.root / PRIVATE / uuid.uuid4().hex
        root.mkdir(mode=0o700)
        return CachedVolume(root)

    def _sweep_private(self) -> None:
        folder = self.root / PRIVATE
        if not folder.is_dir():
            return
        for root in folder.iterdir():
            lock = CachedVolume(root).try_lock(0)
            if lock is None:
                continue  # a running job's copy
            try:
                remove_tree(root)
            finally:
                _unlock(lock)

    def cached_volumes(self) -> list[CachedVolume]:
        if not self.root.exists():
            return []
        return [CachedVolume(d) for ws in self.root.iterdir() if ws.is_dir() and ws.name not in (PRIVATE, SNAPSHOTS)
                for d in ws.iterdir() if d.is_dir()]

    def usage(self) -> int:
        """Bytes the cached volumes and snapshots take (walks the folders of those without a recorded usage)."""
        return (sum(v.usage_estimate() for v in self.cached_volumes())
                + sum(s.volume.usage_estimate() for s in self.snapshots() if s.volume.root.is_dir()))

    def _sweep_superseded(self, snapshots: list[Snapshot]) -> list[Snapshot]:
        """Remove the snapshots of a volume older than its newest one when no job reads them: a reader pins
        the current generation, so no later job asks for them (a pruned generation among them). The rest."""
        newest: dict[Path, int] = {}
        for snap in snapshots:
            newest[snap.folder] = max(newest.get(snap.folder, -1), snap.generation)
        return [snap for snap in snapshots
                if snap.generation == newest[snap.folder] or not snap.remove_if_unused()]

    def evict(self, reserve: int = 0) -> list[Path]:
        """Remove least recently used volumes and snapshots not in use until the cache fits under the cap
        (and private copies a killed job left behind, and snapshots a newer generation superseded)."""
        self._sweep_private()
        snapshots = self._sweep_superseded(self.snapshots())
        volumes = sorted([*self.cached_volumes(), *snapshots], key=lambda v: v.last_used())
        usage = {id(v): (v.volume if isinstance(v, Snapshot) else v).usage_estimate() for v in volumes}
        total = sum(usage.values()) + reserve
        evicted = []
        for vol in volumes:
            if total <= self.max_bytes:
                break
            if isinstance(vol, Snapshot):
                if vol.remove_if_unused():
                    total -= usage[id(vol)]
                    evicted.append(vol.volume.root)
                continue
            with open(vol.root / "lock", "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a job is using it
                try:
                    vol.forget_clean()  # first: an eviction killed half-way must not leave it over a partial tree
                    for child in vol.root.iterdir():
                        if child.name != "lock":
                            remove_tree(child)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            total -= usage[id(vol)]
            evicted.append(vol.root)
        if evicted:
            from ..ops.metrics import CACHE_EVICTIONS

            CACHE_EVICTIONS.inc(len(evicted))
        return evicted


_MEMO: "OrderedDict[Path, tuple[tuple, object]]" = OrderedDict()
COLUMNS = "columns"  # manifest.bin's first field since 2026-12-07 (a generation before)
_MEMO_SIZE = 6  # files (hash caches, synced manifests) a worker process keeps parsed in memory
_memo_lock = threading.Lock()


def _well_formed_runs(runs) -> bool:
    """Whether `runs` are what save_synced writes (Manifest.runs); anything else is not used at all."""
    return isinstance(runs, list) and all(
        isinstance(run, tuple) and len(run) == 4 and isinstance(run[0], str) and isinstance(run[1], str)
        and type(run[2]) is int and run[2] > 0 and isinstance(run[3], str) for run in runs)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection in the block. A sync makes and drops tens of thousands of objects, which set off
    collections that walk every object of the process again and again: a full one took 60 ms in a process holding
    a 10,000-entry volume, a tenth of a cold push. What a sync makes holds no cycles; reference counts free it."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def bulk_load() -> Iterator[None]:
    """No cyclic garbage collection while 100,000 entries are made (a third to a half of a load).
    After, the memory of the load's big buffers (the file's bytes, its columns) goes back to the system: glibc
    keeps a freed big buffer in its heap, which Python's own allocator does not reuse for objects, so a next load
    would take new memory on top of it (100,000 entries: 9 MB less at a push's peak)."""
    try:
        with no_cyclic_gc():
            yield
    finally:
        if _malloc_trim is not None:
            _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


_last_tree_bytes: tuple[Mapping, int] | None = None


def _tree_bytes(manifest: Manifest) -> int:
    """What a tree of `entries` takes on disk: its files and its links' targets. A worker's synced manifest is lent
    read-only (the memo's own MappingProxyType, over a dict nobody else holds), so the figure of the last one is
    kept for its next unchanged push: a 10,000-entry sum is 2 ms of a 45 ms push. Holding it keeps at most that
    one manifest alive after the memo lets it go, until the next sync records another."""
    global _last_tree_bytes
    last, entries = _last_tree_bytes, manifest.entries
    if last is not None and last[0] is entries:
        return last[1]
    total = manifest.size_bytes + sum(len(os.fsencode(e.target)) for e in entries.values() if e.target)
    if type(entries) is MappingProxyType:
        _last_tree_bytes = (entries, total)
    return total


def _file_key(path: Path) -> tuple | None:
    """What changes whenever the file is rewritten (_write_atomic renames a new inode into place)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _memo_get(path: Path, key: tuple | None):
    with _memo_lock:
        hit = _MEMO.get(path)
        if hit is None or hit[0] != key:
            return None
        _MEMO.move_to_end(path)
        return hit[1]


def _memo_put(path: Path, key: tuple | None, value: object) -> None:
    if key is None:
        return
    with _memo_lock:
        _MEMO[path] = (key, value)
        _MEMO.move_to_end(path)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)


def _lock_file(path: Path, operation: int) -> IO | None:
    """flock `path` (created if missing); None when LOCK_NB and taken. Retries when the file was unlinked
    and perhaps recreated meanwhile (a snapshot's removal), so the lock held is always the one at `path`."""
    while True:
        lock = open(path, "a+")
        try:
            try:
                fcntl.flock(lock, operation)
            except BlockingIOError:
                lock.close()
                return None
            try:
                if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                    return lock
            except FileNotFoundError:
                pass
            lock.close()
        except BaseException:
            lock.close()
            raise


def _folders(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _unlock(lock: IO) -> None:
    try:
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        lock.close()


def remove_tree(path: str | Path) -> None:
    """Remove a file or folder of the cache whatever a job left in it: any depth (no recursion), folders
    without owner rwx, FIFOs, sockets, undecodable names. Never follows a link. Gone already is fine."""
    parent_dir, base = os.path.split(os.path.abspath(os.fspath(path)))
    try:
        top = os.open(parent_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        st = os.lstat(base, dir_fd=top)  # by name from its folder: its own path may be longer than the system takes
    except FileNotFoundError:
        os.close(top)
        return
    stack: list[list] = [[top, base, None]]  # [parent fd, name, own fd once opened]
    try:
        if not stat.S_ISDIR(st.st_mode):
            _in_writable(parent_dir, lambda: os.unlink(base, dir_fd=top))
            stack = []
        while stack:
            item = stack[-1]
            parent, name, fd = item
            if fd is None:
                try:
                    if stat.S_IMODE(os.lstat(name, dir_fd=parent).st_mode) & 0o700 != 0o700:
                        os.chmod(name, 0o700, dir_fd=parent)  # a job's chmod 0 must not keep us out
                    fd = item[2] = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
                except FileNotFoundError:
                    stack.pop()
                    continue
            subfolders = []
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.name)
                    else:
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except FileNotFoundError:
                            pass
            if subfolders:
                stack.extend([fd, sub, None] for sub in subfolders)
                continue
            os.close(fd)
            item[2] = None
            stack.pop()
            try:
                if parent == top:
                    _in_writable(parent_dir, lambda: os.rmdir(name, dir_fd=parent))
                else:
                    os.rmdir(name, dir_fd=parent)  # opened by us above: already 0700
            except FileNotFoundError:
                pass
    finally:
        for _, _, fd in stack:
            if fd is not None:
                os.close(fd)
        os.close(top)


def _in_writable(folder: str, action: Callable[[], None]) -> None:
    """Run `action` (an unlink or rmdir in `folder`); if the folder lacks owner write/search permission
    (a job's chmod), grant it for the moment and put the mode back."""
    try:
        action()
        return
    except PermissionError:
        mode = stat.S_IMODE(os.lstat(folder).st_mode)
        if mode & 0o300 == 0o300:
            raise
    os.chmod(folder, mode | 0o700)
    try:
        action()
    finally:
        os.chmod(folder, mode)


def _private(folder: Path) -> None:
    """Create `folder` if needed and make it the worker's alone (0700): no local user can race a pull."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        os.chmod(folder, 0o700)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
