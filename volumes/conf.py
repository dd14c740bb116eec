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
    # How long a job that holds a volume's lease waits for another process of its machine to let go of
    # the volume's local cache (a stopped or hung job) before it uses a private copy instead.
    "CACHE_LOCK_WAIT": 30.0,
    "TRANSFER_THREADS": 8,
    # Entries of read manifests a web or worker process keeps in memory for browsing (about 400 bytes each).
    "MANIFEST_MEMORY_ENTRIES": 250_000,
    "HISTORY_KEEP_GENERATIONS": 50,
    "HISTORY_KEEP_DAYS": 30,
    "GC_GRACE": 3600.0,
    # Days a deleted volume stays in the workspace's trash (restorable) before GC removes its objects.
    "TRASH_DAYS": 7.0,
    "WORKER_NAME": "",
    "SANDBOX_NETWORK": "none",
    "SANDBOX_ALLOW_NETWORKS": [],
    "JOB_TIMEOUT": 3600.0,
    # A job's log keeps its first and last half of this many bytes, with a note of what was cut between.
    "JOB_LOG_MAX_BYTES": 1024 * 1024,
    # Bytes a caller without a login (no session, no token) may send; more is refused before reading.
    "ANONYMOUS_BODY_MAX_BYTES": 64 * 1024,
    "JOB_ENV_ALLOW": [],
    "SANDBOX_ALL": False,
    "JOB_UIDS": "",
    # Filesystem storage roots that workspace admins may pick: <STORAGE_BASE_DIR>/<workspace id>/...
    # (None: DATA_DIR/storage). Superusers and the command line may use any folder.
    "STORAGE_BASE_DIR": None,
    # Hosts, IP addresses or networks (CIDR) that storage endpoints may use although they are
    # loopback or link-local (refused otherwise), e.g. ["127.0.0.1"] for a local MinIO.
    "STORAGE_ALLOWED_HOSTS": (),
    # Seconds a push or pull keeps retrying a storage that is down (refused, timeouts, 5xx).
    "STORAGE_RETRY_FOR": 60.0,
    # /metrics and the details of /healthz: staff, `Authorization: Bearer <MONITORING_TOKEN>`, or a
    # REMOTE_ADDR in one of these networks (e.g. ["10.0.0.0/8"] for the Prometheus server).
    # Seconds the presigned URLs given to agent workers stay valid (0: agents always use the proxy), and
    # storages (names or kinds, "*" for all) whose blobs agents always move through the server.
    "PRESIGN_SECONDS": 300.0,
    "AGENT_PROXY_STORAGES": (),
    "MONITORING_TOKEN": "",
    "MONITORING_ALLOW_NETWORKS": (),
}

# The worker's own credentials: never handed to a job, even if VOLUMES_JOB_ENV_ALLOW names them (volumes.E004).
WORKER_SECRETS = frozenset({
    "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
    "VOLUMES_TOKEN", "VOLUMES_TOKEN_FILE", "VOLUMES_AGENT_TOKEN", "VOLUMES_MONITORING_TOKEN",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_CLIENT_SECRET",
    "GOOGLE_APPLICATION_CREDENTIALS",
})

EDITION_LIMITS = {
    "community": {"MAX_VOLUMES_PER_WORKSPACE": 20, "MAX_FILE_SIZE": 50 * 1024 * 1024},
    "enterprise": {"MAX_VOLUMES_PER_WORKSPACE": None, "MAX_FILE_SIZE": None},
}


def get(name: str) -> Any:
    """One VOLUMES setting, read at call time so tests can override settings. No merged copy of the two dicts:
    a sync asks for a setting per file (a retry budget an upload)."""
    configured = getattr(settings, "VOLUMES", {})
    return configured[name] if name in configured else DEFAULTS[name]


def storage_base_dir() -> Path:
    base = get("STORAGE_BASE_DIR")
    return Path(base) if base else Path(get("DATA_DIR")) / "storage"


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
