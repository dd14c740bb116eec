"""Heartbeats of the processes that run jobs (Celery worker processes and agent workers), for the Workers page."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from .. import __version__, conf
from ..models import WorkerHeartbeat

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # a Celery worker process reports this often (an agent at every claim and job heartbeat)
FORGET_AFTER = timedelta(days=1)  # rows of workers silent this long are deleted


def worker_heartbeat(name: str, kind: str, *, workspace: str | None = None, version: str = "",
                     cache_bytes: int | None = None, cache_max_bytes: int | None = None,
                     min_interval: float = 0.0) -> None:
    """Record that the worker `name` is alive (with what it says about itself). With `min_interval`, a worker
    seen less than that many seconds ago is not written again (agents poll every second)."""
    now = timezone.now()
    row = WorkerHeartbeat.objects.filter(name=name[:200]).first()
    if row is not None and min_interval and (now - row.last_seen).total_seconds() < min_interval \
            and (workspace is None or workspace in row.workspaces) and cache_bytes is None:
        return
    fields: dict = {"kind": kind, "last_seen": now}
    if version:
        fields["version"] = version[:50]
    if cache_bytes is not None:
        fields["cache_bytes"] = max(0, int(cache_bytes))
    if cache_max_bytes is not None:
        fields["cache_max_bytes"] = max(0, int(cache_max_bytes))
    if workspace is not None:
        fields["workspaces"] = sorted({*(row.workspaces if row else []), workspace})
    if row is None:
        WorkerHeartbeat.objects.get_or_create(name=name[:200], defaults={**fields, "started_at": now})
        return
    WorkerHeartbeat.objects.filter(pk=row.pk).update(**fields)


def worker_gone(name: str) -> None:
    """A worker that stops cleanly takes itself off the list (a crashed one shows as silent)."""
    WorkerHeartbeat.objects.filter(name=name[:200]).delete()


def workers_forget_silent() -> int:
    return WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - FORGET_AFTER).delete()[0]


_started: set[int] = set()


def start_heartbeat_thread(name: str, kind: str = WorkerHeartbeat.Kind.CELERY) -> None:
    """In a Celery worker process: report every HEARTBEAT_SECONDS, with the cache's usage once a minute."""
    import os

    if os.getpid() in _started:
        return
    _started.add(os.getpid())
    from ..engine.cache import WorkerCache

    def loop() -> None:
        cache = WorkerCache(conf.get("CACHE_DIR"), conf.get("CACHE_MAX_BYTES"))
        usage, measured = None, 0.0
        while True:
            try:
                if time.monotonic() - measured >= 60:
                    usage, measured = cache.usage(), time.monotonic()
                worker_heartbeat(name, kind, version=__version__, cache_bytes=usage,
                                 cache_max_bytes=conf.get("CACHE_MAX_BYTES"))
                workers_forget_silent()
            except Exception:  # noqa: BLE001 - a heartbeat never stops the worker; the page shows it silent
                logger.warning("worker heartbeat failed", exc_info=True)
            finally:
                close_old_connections()
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=loop, name="volumes-heartbeat", daemon=True).start()
