"""One job from leases to release: acquire -> pull -> mount -> run -> push -> release.

Read-only mounts pin their volume's committed generation instead (engine/pins.py): no lease, nothing
pushed, so they run next to other readers and the writer. Where the kernel mounts it read-only (the
sandbox; a job user of its own with idmapped mounts on a root worker) a reader gets the worker's shared
snapshot of that generation (filled once, seeded from the warm cache: `WorkerCache.snapshot`); else a
private copy, its changes discarded.

Used unchanged by Celery workers, `manage.py run_script` and agent workers; they differ
only in the Remote (database or HTTP) and the reporter (database or HTTP).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from .. import conf
from ..engine import sync
from ..engine.cache import WorkerCache
from ..engine.faults import crash_point
from ..engine.leases import Holder, Lease
from ..engine.manifest import Manifest, diff
from ..engine.pins import Pin
from ..engine.remote import Remote
from ..engine.sync import count
from ..exceptions import LeaseLost, VolumesError
from . import identity, idmap
from . import sandbox as jail
from .mounts import Mount
from .process import run_script


class Reporter(Protocol):
    def log(self, line: str) -> None: ...
    def flush(self) -> None: ...
    def status(self, status: str) -> None: ...
    def heartbeat(self) -> bool: ...
    def mount_figures(self, volume_name: str, **figures: Any) -> None: ...
    def script_started(self) -> None: ...
    def script_finished(self) -> None: ...


@dataclass
class JobSpec:
    id: int
    workspace_id: str
    language: str
    content: str
    args: dict
    sandbox: bool
    mounts: list  # MountPlan-like: .name, .mount_path, .read_only
    user: str = ""  # the username the job runs for
    hidden: tuple = ()  # folders a job run as its own uid must not see (filesystem storage roots)


def job_env(spec: JobSpec, log) -> dict[str, str]:
    """The job's own variables plus the worker's variables the operator allow-listed (VOLUMES_JOB_ENV_ALLOW).

    Everything else of the worker's environment (database URL, secret key, storage credentials) stays out,
    and so do the worker's credentials if allow-listed: workers run no system checks (volumes.E004)."""
    names = set(conf.get("JOB_ENV_ALLOW"))
    if refused := sorted(names & conf.WORKER_SECRETS):
        log(f"warning: VOLUMES_JOB_ENV_ALLOW names {', '.join(refused)}, the worker's credentials; "
            "the job does not get them")
    allowed = {name: os.environ[name] for name in sorted(names - conf.WORKER_SECRETS) if name in os.environ}
    return {
        **allowed,
        "VOLUMES_JOB_ID": str(spec.id),
        "VOLUMES_WORKSPACE": spec.workspace_id,
        "VOLUMES_USER": spec.user,
        "VOLUMES_MOUNTS": json.dumps({plan.name: plan.mount_path for plan in spec.mounts}),
    }


@dataclass
class Outcome:
    status: str  # "success" | "failure" | "cancelled"
    result: Any = None
    error: str = ""


@dataclass
class _Held:
    plan: Any
    lease: Lease
    base: Manifest | None = None
    cached: Any = None
    shared: bool = False  # a reader's shared snapshot: mounted read-only by the kernel, never changed


@dataclass
class _Renewer:
    """Renews every lease and sends heartbeats; sets `stop` when a lease is lost or the job is cancelled.

    A watchdog also stops the job by this worker's own monotonic clock once renewals have not
    succeeded for the TTL minus one renew interval, so a starved worker (database unreachable,
    a renew that hangs) stops its script before any lease can expire under it."""

    remote: Remote
    reporter: Reporter
    leases: list[Lease] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    _done: threading.Event = field(default_factory=threading.Event)
    # Every held lease is live by the database clock until at least _renewed_at + TTL.
    _renewed_at: float = 0.0
    _renew_error: Exception | None = None

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._loop, name="lease-renewer", daemon=True),
                   threading.Thread(target=self._watch, name="lease-watchdog", daemon=True)]
        for thread in threads:
            thread.start()
        return threads

    def add(self, lease: Lease) -> None:
        if not self.leases:
            # The lease is live until at least the moment its acquire was sent + TTL, not its arrival + TTL.
            self._renewed_at = lease.sent_at or time.monotonic()
        self.leases.append(lease)

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()

    def _loop(self) -> None:
        from django.db import connection

        try:
            while not self._done.wait(conf.get("LEASE_RENEW_INTERVAL")):
                started = time.monotonic()  # the database extends each lease at or after this moment
                try:
                    for lease in list(self.leases):
                        if isinstance(lease, Pin):
                            self.remote.renew_pin(lease)
                        else:
                            self.remote.renew(lease)
                    self._renewed_at = started
                    if self.reporter.heartbeat():
                        self._halt("cancelled")
                    self.reporter.flush()
                except LeaseLost as exc:
                    self._halt(f"lease lost: {exc}")
                except Exception as exc:  # a storage/database/network hiccup: retry until the watchdog's deadline
                    self._renew_error = exc
        finally:
            connection.close()

    def _watch(self) -> None:
        limit = conf.get("LEASE_TTL") - conf.get("LEASE_RENEW_INTERVAL")
        while not self._done.wait(0.1):
            if self.leases and time.monotonic() - self._renewed_at > limit:
                error = f" ({self._renew_error})" if self._renew_error else ""
                self._halt(f"lease lost: could not renew for {limit:g}s{error}")
                return

    def close(self, threads: list[threading.Thread]) -> None:
        self._done.set()
        for thread in threads:
            thread.join(timeout=conf.get("LEASE_RENEW_INTERVAL") + 5)  # a hung renew must not hang the job


def _preload_hash_caches(held: list[_Held]) -> threading.Thread:
    """Load each read-write volume's hash cache while the script runs: its push needs it, and with 100,000 files
    that is a tenth of a second the job's end need not wait for (the worker only waits on the script meanwhile).
    A load that fails is the push's to meet again."""
    def load() -> None:
        for h in held:
            if not h.plan.read_only and h.cached is not None:
                try:
                    h.cached.load_hashes(like=h.base)
                except Exception:  # noqa: BLE001 - the push loads it again and reports what it meets
                    pass

    thread = threading.Thread(target=load, name="preload-hash-caches", daemon=True)
    thread.start()
    return thread


def _keep_hashes(held: list[_Held], untouched: dict) -> None:
    """Files the script did not touch keep their hashes although running it as another user changed their
    ctimes (the owner went there and back); otherwise the next scan would rehash every file of the volume."""
    for h in held:
        files = untouched.get(h.cached.tree)
        if not files:
            continue
        hashes = dict(h.cached.load_hashes())
        carried = 0
        for path, (before, after) in files.items():
            entry = hashes.get(path)
            if entry and tuple(entry[:5]) == before:
                hashes[path] = (*after, *entry[5:])
                carried += 1
        if carried:
            h.cached.save_hashes(hashes)


def _names(entries: list, limit: int = 10) -> str:
    paths = sorted(entry.path for entry in entries)
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit:,} more" if len(paths) > limit else "")


def _report_discarded(h: _Held, log) -> None:
    """Name what the job changed in a read-only volume (possible without the sandbox, where no kernel
    read-only mount exists); the caller then puts the pulled generation back."""
    if h.base is None or h.cached is None:
        return
    try:
        current, _, _ = sync.scan(h.cached.tree, h.cached.load_hashes())
    except Exception as exc:  # a tree the job made unreadable: still restored, but say so
        log(f"volume {h.plan.name} is read-only for this job; its changes could not be listed ({exc}) "
            "and were discarded")
        return
    added, changed, deleted = diff(h.base, current)
    if not (added or changed or deleted):
        return
    parts = [f"{count(len(entries), 'path')} {what} ({_names(entries)})"
             for what, entries in (("added", added), ("changed", changed), ("deleted", deleted)) if entries]
    log(f"volume {h.plan.name} is read-only for this job: its changes were discarded, not committed: "
        f"{'; '.join(parts)}")


@contextmanager
def _snapshot(remote: Remote, pin: Pin, cache: WorkerCache, log) -> Iterator[tuple[Any, sync.SyncStats]]:
    """The worker's shared snapshot of the pinned generation, held for the job: filled by the first reader
    (seeded from the worker's cache of the volume and its newest earlier snapshot), then reused. Stats: what
    this job transferred."""
    def fill(scratch):
        with cache.volume(pin.workspace_id, pin.volume_name).if_free() as warm, \
                cache.earlier_snapshot(pin.workspace_id, pin.volume_name, pin.generation) as earlier:
            return sync.pull(remote, pin, scratch, log=log, seeds=[v for v in (warm, earlier) if v])[1]

    with cache.snapshot(pin.workspace_id, pin.volume_name, pin.generation, pin.manifest_key, fill, log) as (
            volume, filled):
        if filled is None:
            log(f"volume {pin.volume_name}: this worker's read-only snapshot of generation {pin.generation} "
                "(shared with its other readers)")
            manifest = volume.synced_manifest(pin.manifest_key)
            filled = sync.SyncStats(files_skipped=sum(1 for _ in manifest.files) if manifest else 0)
        else:
            log(f"volume {pin.volume_name}: filled this worker's read-only snapshot of generation "
                f"{pin.generation} (its next readers share it)")
        yield volume, filled


_idmap_probes: dict[tuple, bool] = {}


def kernel_read_only(sandbox: bool, cache: WorkerCache) -> bool:
    """Whether this job's read-only mounts are read-only mounts of the kernel, with no chown of their tree, so
    a shared snapshot may be mounted: nsjail's read-only binds (as the worker's user), or idmapped read-only
    mounts (root: in the sandbox, or as a job user of its own). Otherwise (symlinks, the chown fallback) no."""
    if os.geteuid() != 0:
        return sandbox
    if not sandbox and not identity.can_isolate():
        return False
    key = (os.fspath(cache.root), os.environ.get("VOLUMES_IDMAP", ""))
    if key not in _idmap_probes:
        try:
            cache.root.mkdir(parents=True, exist_ok=True)
            idmap.close(idmap.detached_mounts([(cache.root, True)], 65534, 65534))
            _idmap_probes[key] = True
        except idmap.IdmapUnavailable:
            _idmap_probes[key] = False
    return _idmap_probes[key]


def execute(spec: JobSpec, remote: Remote, cache: WorkerCache, reporter: Reporter, holder: str) -> Outcome:
    held: list[_Held] = []
    log = reporter.log
    remote.notify = log  # storage retries (engine/retry.py) say so in the job's log
    final: Outcome | None = None  # set once the job's outcome is decided; cleanup never changes it
    # The worker's own VOLUMES_SANDBOX_ALL counts too (an agent's operator may demand it for its machine).
    sandbox = spec.sandbox or bool(conf.get("SANDBOX_ALL"))
    try:
        if sandbox:
            jail.require("VOLUMES_SANDBOX_ALL is on" if conf.get("SANDBOX_ALL")
                         else "it has the `sandbox` annotation, or the server sets VOLUMES_SANDBOX_ALL")
        with ExitStack() as stack:
            # Renewing starts with the first lease: held leases (and the heartbeat) stay alive
            # while the job waits for its next volume.
            renewer = _Renewer(remote, reporter)
            threads = renewer.start()
            stack.callback(renewer.close, threads)
            # Fixed order: no deadlocks.
            for plan in sorted((p for p in spec.mounts if not p.read_only), key=lambda p: p.name.lower()):
                reporter.status("waiting")
                log(f"leasing volume {plan.name}")

                def on_wait(who: Holder | None, name=plan.name) -> None:
                    log(f"waiting for volume {name}: held by {who.describe() + who.queue_text() if who else 'another job'}")

                lease = remote.acquire(spec.workspace_id, plan.name, holder, job_id=spec.id, on_wait=on_wait)
                held.append(_Held(plan, lease))
                renewer.add(lease)
                reporter.mount_figures(plan.name, lease_token=lease.token, base_generation=lease.generation)
            # Read-only mounts take no lease: each pins its volume's committed generation, once the leases
            # are held (a long wait for a lease must not hold back an old generation from GC).
            for plan in sorted((p for p in spec.mounts if p.read_only), key=lambda p: p.name.lower()):
                pin = remote.pin(spec.workspace_id, plan.name, holder, job_id=spec.id)
                held.append(_Held(plan, pin))
                renewer.add(pin)
                log(f"pinned generation {pin.generation} of {plan.name} (read-only, no lease)")
                reporter.mount_figures(plan.name, base_generation=pin.generation)
            reporter.status("running")
            shareable = any(isinstance(h.lease, Pin) for h in held) and kernel_read_only(sandbox, cache)
            for h in held:
                started = time.monotonic()
                if isinstance(h.lease, Pin) and shareable:
                    h.cached, stats = stack.enter_context(_snapshot(remote, h.lease, cache, log))
                    h.shared = True
                elif isinstance(h.lease, Pin):
                    # A folder of its own: a generation a writer on this machine is changing is never seen.
                    h.cached = stack.enter_context(cache.private_copy(log))
                    log(f"volume {h.plan.name}: a private copy (this worker cannot mount it read-only for the job; "
                        "whatever the job changes there is discarded)")
                    # Seeded from the worker's cache of the volume unless a job of this machine holds it.
                    with cache.volume(spec.workspace_id, h.plan.name).if_free() as warm:
                        h.base, stats = sync.pull(remote, h.lease, h.cached, log=log, for_job=True,
                                                  seeds=[warm] if warm else [])
                else:
                    h.cached = stack.enter_context(
                        cache.checkout(spec.workspace_id, h.plan.name, wait=conf.get("CACHE_LOCK_WAIT"), log=log)
                    )
                    h.base, stats = sync.pull(remote, h.lease, h.cached, log=log, for_job=True)
                reporter.mount_figures(
                    h.plan.name, files_pulled=stats.files_pulled, bytes_pulled=stats.bytes_pulled,
                    files_skipped=stats.files_skipped + stats.files_copied,
                )
                copied = f", {count(stats.files_copied, 'file')} copied on this worker" if stats.files_copied else ""
                clean = " (the cache was known clean, not rescanned)" if stats.known_clean else ""
                log(
                    f"volume {h.plan.name} at generation {h.lease.generation}: {count(stats.files_pulled, 'file')} "
                    f"pulled ({count(stats.bytes_pulled, 'byte')}){copied}, {stats.files_skipped:,} unchanged{clean}, "
                    f"in {time.monotonic() - started:.2f}s ({'read-only' if h.plan.read_only else 'read-write'})"
                )
            workdir = Path(tempfile.mkdtemp(prefix=f"job-{spec.id}-"))
            stack.callback(shutil.rmtree, workdir, True)
            mounts = [Mount(h.cached.tree, h.plan.mount_path, h.plan.read_only, h.shared) for h in held]
            user = None
            if not sandbox and os.geteuid() == 0:  # never run a job's script as root where we can help it
                if identity.can_isolate():
                    user = stack.enter_context(identity.job_user(identity.parse_range(conf.get("JOB_UIDS"))))
                else:
                    log("warning: this worker cannot give the job a user of its own (it is root without "
                        "CAP_SYS_ADMIN, e.g. in a container), so the script runs as the worker's user and can read "
                        "what the worker can; run untrusted code with VOLUMES_SANDBOX_ALL on a worker that can")
            untouched: dict = {}
            reporter.script_started()
            preload = _preload_hash_caches(held)
            run = run_script(
                spec.language, spec.content, spec.args, mounts, sandbox=sandbox, workdir=workdir, log=log,
                stop=renewer.stop, stop_reason=lambda: renewer.reason or "stopped",
                timeout=conf.get("JOB_TIMEOUT"), network=conf.get("SANDBOX_NETWORK"),
                allow_networks=conf.get("SANDBOX_ALLOW_NETWORKS"), env=job_env(spec, log),
                run_as=user, untouched=untouched,
                hide=[Path(conf.get("DATA_DIR")), cache.root, conf.storage_base_dir(), *map(Path, spec.hidden)],
            )
            if user is not None:
                identity.kill_all(user.uid)  # nothing the job started may touch its volumes during the push
            crash_point("job.after_script")
            reporter.script_finished()
            preload.join()  # after the script's end is recorded: a load still going is the job's end, not its script
            _keep_hashes(held, untouched)
            if renewer.stop.is_set():
                outcome = Outcome("cancelled" if renewer.reason == "cancelled" else "failure", error=renewer.reason)
                log(f"job stopped ({renewer.reason}); nothing was committed")
            elif run.error:
                outcome = Outcome("failure", error=run.error)
                log(f"job failed: {run.error}; its volume changes were not committed")
            else:
                outcome = Outcome("success", result=run.result)
            # Upload every read-write volume first, then move all their pointers in one transaction:
            # a job's volumes commit together or not at all.
            prepared: list[tuple[_Held, sync.PreparedCommit | None, sync.SyncStats]] = []
            for h in held:
                if h.plan.read_only and not h.shared:
                    _report_discarded(h, log)
                if outcome.status == "success" and not h.plan.read_only:
                    change, stats = sync.push_prepare(remote, h.lease, h.cached, h.base, job_id=spec.id, log=log,
                                                      max_volume_size=getattr(h.plan, "max_size", None))
                    prepared.append((h, change, stats))
                    if stats.files_hashed:  # files whose stat changed since the pull: read again to find changes
                        log(f"volume {h.plan.name}: {count(stats.files_hashed, 'file')} hashed to find what changed")
                elif not h.plan.read_only and (not renewer.stop.is_set() or renewer.reason == "cancelled"):
                    # Leave the cache clean for the next job: put back exactly what was pulled, and record it
                    # "known clean" (a reader's private copy is simply removed).
                    sync.pull(remote, h.lease, h.cached)
            sync.commit_all(remote, [change for _, change, _ in prepared if change is not None])
            for h, _, stats in prepared:
                reporter.mount_figures(
                    h.plan.name, files_pushed=stats.files_pushed, bytes_pushed=stats.bytes_pushed,
                    files_deleted=stats.files_deleted, committed_generation=stats.committed_generation,
                )
            final = outcome
    except Exception as exc:  # noqa: BLE001 - a job always ends with an outcome, never an escaped exception
        if final is not None:
            log(f"warning: cleaning up after the job failed ({_describe(exc)}); the job's outcome stands")
        else:
            final = Outcome("failure", error=_describe(exc))
            log(f"error: {final.error}")
    finally:
        for h in held:
            pinned = isinstance(h.lease, Pin)
            try:
                remote.release_pin(h.lease) if pinned else remote.release(h.lease)
            except Exception as exc:  # noqa: BLE001 - the lease or pin then expires by its TTL
                log(f"warning: could not release the {'pin' if pinned else 'lease'} on volume {h.plan.name} "
                    f"({_describe(exc)}); it expires by itself")
        pinned_count = sum(isinstance(h.lease, Pin) for h in held)
        if len(held) > pinned_count:
            log(f"released {count(len(held) - pinned_count, 'volume lease')}")
        if pinned_count:
            log(f"released {count(pinned_count, 'pin')}")
        try:
            cache.evict()
        except Exception as exc:  # noqa: BLE001
            log(f"warning: cleaning the worker's cache failed ({_describe(exc)})")
    return final


def _describe(exc: Exception) -> str:
    if isinstance(exc, VolumesError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"the worker could not use its local files: {exc}"
    return f"internal error: {exc.__class__.__name__}: {exc}"
