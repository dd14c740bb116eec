"""Small helpers for engine tests: check out a volume into a cache, commit it back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

from volumes.engine import sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote

ROOT = Path(__file__).resolve().parents[2]


def checkout(volume, cache_root, holder="test", ttl=None, wait=None):
    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, holder, wait=wait)
    if ttl is not None:
        from volumes.engine import leases

        remote.release(lease)
        lease = leases.acquire(volume.pk, holder, ttl=ttl, wait=wait)
    cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
    cached.root.mkdir(parents=True, exist_ok=True)
    base, stats = sync.pull(remote, lease, cached)
    return remote, lease, cached, base, stats


def pull_refused(volume, cache_root, error, holder="test", wait=None):
    """A pull into a fresh checkout of `cache_root` that must raise `error`: (the error, the cached volume).
    The lease is let go whatever happens."""
    import pytest

    remote = DirectRemote()
    lease = remote.acquire(volume.workspace_id, volume.name, holder, wait=wait)
    cached = WorkerCache(cache_root, 10**12).volume(volume.workspace_id, volume.name)
    try:
        with pytest.raises(error) as info:
            sync.pull(remote, lease, cached)
    finally:
        remote.release(lease)
    return info.value, cached


def commit(volume, cache_root, mutate, holder="test"):
    """Check out, apply mutate(tree), push and release; returns the push stats."""
    remote, lease, cached, base, _ = checkout(volume, cache_root, holder)
    try:
        mutate(cached.tree)
        return sync.push(remote, lease, cached, base)
    finally:
        remote.release(lease)


def tree_listing(root: Path) -> dict[str, tuple]:
    """path -> ('file', bytes, mode) | ('link', target) | ('dir', mode), never following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", full.read_bytes(), full.stat().st_mode & 0o777)
    return out


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "") + "@" if s.get("USER") else ""
    return f"postgres://{auth}{host}:{port}/{s['NAME']}"


def worker_env(**extra) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="volumes_site.test_settings",
        DATABASE_URL=database_url(),
        VOLUMES_LEASE_TTL=str(settings.VOLUMES["LEASE_TTL"]),
        VOLUMES_LEASE_RENEW_INTERVAL=str(settings.VOLUMES["LEASE_RENEW_INTERVAL"]),
        PYTHONPATH=str(ROOT),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(code: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    prelude = "import django; django.setup()\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
