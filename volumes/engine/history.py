"""Optional operation history as JSON lines (VOLUMES_HISTORY_FILE), for the lease/sync checker.

Off unless the environment variable is set; then each lease and sync operation appends
one line with the process, volume, token, outcome and the database's clock.
"""
from __future__ import annotations

import json
import os
from typing import Any

_PATH = os.environ.get("VOLUMES_HISTORY_FILE") or None


def record(op: str, lease: Any, outcome: str, **extra: Any) -> None:
    if _PATH is None:
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        db_now = cursor.fetchone()[0]
    line = {
        "op": op,
        "pid": os.getpid(),
        "volume": getattr(lease, "volume_id", None),
        "token": getattr(lease, "token", None),
        "outcome": outcome,
        "db_time": str(db_now),
        **extra,
    }
    with open(_PATH, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
