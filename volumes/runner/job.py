"""One job from leases to release: acquire -> pull -> mount -> run -> push -> release.

Used unchanged by Celery workers, `manage.py run_script` and agent workers; they differ
only in the Remote (database or HTTP) and the reporter (database or HTTP).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import conf
from ..engine import sync
from ..engine.cache import WorkerCache
from ..engine.leases import Holder, Lease
from ..engine.manifest import Manifest
from ..engine.remote import Remote
from ..engine.sync import count
from ..exceptions import LeaseLost, VolumesError
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
            self._renewed_at = time.monotonic()
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


def execute(spec: JobSpec, remote: Remote, cache: WorkerCache, reporter: Reporter, holder: str) -> Outcome:
    held: list[_Held] = []
    log = reporter.log
    try:
        with ExitStack() as stack:
            # Renewing starts with the first lease: held leases (and the heartbeat) stay alive
            # while the job waits for its next volume.
            renewer = _Renewer(remote, reporter)
            threads = renewer.start()
            stack.callback(renewer.close, threads)
            for plan in sorted(spec.mounts, key=lambda p: p.name.lower()):  # fixed order: no deadlocks
                reporter.status("waiting")
                log(f"leasing volume {plan.name}")

                def on_wait(who: Holder | None, name=plan.name) -> None:
                    log(f"waiting for volume {name}: held by {who.describe() if who else 'another job'}")

                lease = remote.acquire(spec.workspace_id, plan.name, holder, job_id=spec.id, on_wait=on_wait)
                held.append(_Held(plan, lease))
                renewer.add(lease)
                reporter.mount_figures(plan.name, lease_token=lease.token, base_generation=lease.generation)
            reporter.status("running")
            for h in held:
                h.cached = stack.enter_context(cache.volume(spec.workspace_id, h.plan.name).in_use())
                started = time.monotonic()
                h.base, stats = sync.pull(remote, h.lease, h.cached, log=log)
                reporter.mount_figures(
                    h.plan.name, files_pulled=stats.files_pulled, bytes_pulled=stats.bytes_pulled,
                    files_skipped=stats.files_skipped,
                )
                log(
                    f"volume {h.plan.name} at generation {h.lease.generation}: {count(stats.files_pulled, 'file')} "
                    f"pulled ({count(stats.bytes_pulled, 'byte')}), {stats.files_skipped:,} unchanged, "
                    f"in {time.monotonic() - started:.2f}s ({'read-only' if h.plan.read_only else 'read-write'})"
                )
            workdir = Path(tempfile.mkdtemp(prefix=f"job-{spec.id}-"))
            stack.callback(shutil.rmtree, workdir, True)
            mounts = [Mount(h.cached.tree, h.plan.mount_path, h.plan.read_only) for h in held]
            reporter.script_started()
            run = run_script(
                spec.language, spec.content, spec.args, mounts, sandbox=spec.sandbox, workdir=workdir, log=log,
                stop=renewer.stop, stop_reason=lambda: renewer.reason or "stopped",
                timeout=conf.get("JOB_TIMEOUT"), network=conf.get("SANDBOX_NETWORK"),
            )
            reporter.script_finished()
            if renewer.stop.is_set():
                outcome = Outcome("cancelled" if renewer.reason == "cancelled" else "failure", error=renewer.reason)
                log(f"job stopped ({renewer.reason}); nothing was committed")
            elif run.error:
                outcome = Outcome("failure", error=run.error)
                log(f"job failed: {run.error}; its volume changes were not committed")
            else:
                outcome = Outcome("success", result=run.result)
            for h in held:
                if outcome.status == "success" and not h.plan.read_only:
                    stats = sync.push(remote, h.lease, h.cached, h.base, job_id=spec.id, log=log,
                                      max_volume_size=getattr(h.plan, "max_size", None))
                    reporter.mount_figures(
                        h.plan.name, files_pushed=stats.files_pushed, bytes_pushed=stats.bytes_pushed,
                        files_deleted=stats.files_deleted, committed_generation=stats.committed_generation,
                    )
                elif not renewer.stop.is_set() or renewer.reason == "cancelled":
                    # Leave the cache clean for the next job: put back exactly what was pulled.
                    sync.pull(remote, h.lease, h.cached)
            return outcome
    except VolumesError as exc:
        log(f"error: {exc}")
        return Outcome("failure", error=str(exc))
    finally:
        for h in held:
            remote.release(h.lease)
        if held:
            log(f"released {count(len(held), 'volume lease')}")
        cache.evict()
