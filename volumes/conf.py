"""The VOLUMES settings, merged with defaults, and the edition limits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "DATA_DIR": Path("var"),
    "CACHE_DIR": Path("var/cache"),
    "LEASE_TTL": 60.0,
    "LEASE_RENEW_INTERVAL": 10.0,
    "LEASE_WAIT_MAX": 600.0,
    "EDITION": "community",
    "MAX_VOLUMES_PER_WORKSPACE": None,
    "MAX_FILE_SIZE": None,
    "CACHE_MAX_BYTES": 10 * 1024**3,
    "TRANSFER_THREADS": 8,
    "HISTORY_KEEP_GENERATIONS": 50,
    "HISTORY_KEEP_DAYS": 30,
    "WORKER_NAME": "",
    "SANDBOX_NETWORK": True,
    "JOB_TIMEOUT": 3600.0,
}

EDITION_LIMITS = {
    "community": {"MAX_VOLUMES_PER_WORKSPACE": 20, "MAX_FILE_SIZE": 50 * 1024 * 1024},
    "enterprise": {"MAX_VOLUMES_PER_WORKSPACE": None, "MAX_FILE_SIZE": None},
}


def get(name: str) -> Any:
    """One VOLUMES setting, read at call time so tests can override settings."""
    return {**DEFAULTS, **getattr(settings, "VOLUMES", {})}[name]


def edition() -> str:
    value = get("EDITION")
    if value not in EDITION_LIMITS:
        raise ValueError(f"VOLUMES_EDITION must be 'community' or 'enterprise', not {value!r}")
    return value


def _limit(name: str) -> int | None:
    override = get(name)
    return int(override) if override else EDITION_LIMITS[edition()][name]


def max_volumes_per_workspace() -> int | None:
    return _limit("MAX_VOLUMES_PER_WORKSPACE")


def max_file_size() -> int | None:
    return _limit("MAX_FILE_SIZE")
