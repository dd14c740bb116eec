"""/healthz: are the database, the broker and every workspace's volume storage reachable?"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.db import connection

CHECK_TIMEOUT = 5.0  # seconds for all checks together; a storage that has not answered by then is "not ok"
CACHE_SECONDS = 5.0  # anonymous callers may poll as often as they like: storages are asked at most this often


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 4)}


def _timed(name: str, fn) -> Check:
    start = time.monotonic()
    try:
        detail = fn() or ""
        return Check(name, True, detail, time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - any failure is "not reachable"; the detail says which
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return Check(name, False, f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
                     time.monotonic() - start)


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker() -> str:
    from celery import current_app as app  # the project's app (volumes_site.celery): no import upwards

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT)
        if conn.transport_cls == "filesystem" or conn.transport.driver_type == "filesystem":
            import os

            folder = conn.transport_options.get("data_folder_in") or ""
            if folder and not os.access(folder, os.W_OK):
                raise OSError(f"the broker folder {folder} is not writable")
        return conn.as_uri()  # without the password


def _storage_checks() -> list[tuple[str, object]]:
    """One check per storage that some workspace uses for its volumes."""
    from ..models import ObjectStorage, Workspace
    from ..storage.factory import store_for_storage

    used = {}
    for ws_id, storage_id in Workspace.objects.exclude(volume_storage=None).values_list("id", "volume_storage_id"):
        used.setdefault(storage_id, []).append(ws_id)
    checks = []
    for storage in ObjectStorage.objects.filter(pk__in=used).order_by("pk"):
        def probe(storage=storage) -> str:
            store = store_for_storage(storage)
            for _ in store.list(".volumes-check/"):  # a listing proves endpoint, credentials and bucket
                break
            return store.label
        checks.append((f"storage {storage.pk} ({', '.join(sorted(used[storage.pk]))}: {storage.name})", probe))
    return checks


_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="healthz")
_lock = threading.Lock()
_last: tuple[float, list[Check]] | None = None


def _run_all() -> list[Check]:
    from django.db import close_old_connections

    results = [_timed("database", _database)]
    if not results[0].ok:
        storages = []
    else:
        try:
            storages = _storage_checks()
        except Exception as exc:  # noqa: BLE001
            results.append(Check("storages", False, f"could not list the storages: {type(exc).__name__}"))
            storages = []
    jobs = {_pool.submit(_timed, "broker", _broker): "broker"}

    def storage_check(name, fn):
        try:
            return _timed(name, fn)
        finally:
            close_old_connections()

    jobs.update({_pool.submit(storage_check, name, fn): name for name, fn in storages})
    done, _ = wait(jobs, timeout=CHECK_TIMEOUT)
    for future, name in jobs.items():
        results.append(future.result() if future in done
                       else Check(name, False, f"no answer within {CHECK_TIMEOUT:g} s", CHECK_TIMEOUT))
    return results


def health_checks(fresh: bool = False) -> list[Check]:
    """Every check, at most CACHE_SECONDS old (fresh=True: run them now)."""
    global _last
    with _lock:
        if not fresh and _last and time.monotonic() - _last[0] < CACHE_SECONDS:
            return _last[1]
        results = _run_all()
        _last = (time.monotonic(), results)
        return results
