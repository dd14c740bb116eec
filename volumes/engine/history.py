"""Optional operation history as JSON lines (VOLUMES_HISTORY_FILE), and a checker for it.

Off unless the environment variable is set (one comparison with None per call); then each
lease, commit, pull and push appends one line with the process, volume, token and outcome.
Lease lines also carry the lease's own times as the database stored them (`acquired_at`,
`expires_at`), so the checker judges expiry by the database clock, exactly as the engine does.

    python -m volumes.engine.history FILE   prints the violations; exit status 1 if there are any
"""
from __future__ import annotations

import json
import os
import sys
import time
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

_PATH = os.environ.get("VOLUMES_HISTORY_FILE") or None
_LEASE_OPS = {"acquire", "renew", "release", "commit"}  # run where the database is; pull/push may not


def record(op: str, lease: Any, outcome: str, **extra: Any) -> None:
    if _PATH is None:
        return
    line = {
        "op": op,
        "pid": os.getpid(),
        "volume": getattr(lease, "volume_id", None),
        "token": getattr(lease, "token", None),
        "holder": getattr(lease, "holder", None),
        "base": getattr(lease, "generation", None),
        "outcome": outcome,
        "time": time.time(),
    }
    if op in _LEASE_OPS:
        line.update(_database_times(op, lease, outcome))
    line.update(extra)
    with open(_PATH, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")


def _database_times(op: str, lease: Any, outcome: str) -> dict:
    from django.db import connection

    from ..models import Volume

    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        times = {"db_time": cursor.fetchone()[0]}
    if op in ("acquire", "renew") and outcome == "ok":
        # The row as this acquire/renew left it; if another token is there already, we cannot know.
        row = (
            Volume.objects.filter(pk=lease.volume_id, lease_token=lease.token)
            .values("lease_acquired_at", "lease_expires_at")
            .first()
        )
        if row is not None:
            times.update(acquired_at=row["lease_acquired_at"], expires_at=row["lease_expires_at"])
    return times


# The checker ------------------------------------------------------------------------------------

def _time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC


def check(lines: Iterable[dict]) -> list[str]:
    """Human-readable violations of the lease and commit rules in a history; empty when clean.

    Per volume:
    - acquire tokens strictly increase (in the order the history was written);
    - no acquire while another token's lease is live: not released, not expired by the database clock
      (a release that succeeded ended its lease before any newer acquire: only the current token
      can release, and a newer acquire replaces it);
    - every commit's generation is its parent + 1, and its parent the previous committed generation
      (known from the last commit, or from the generation the last acquire found, so a commit whose
      line a killed process never wrote leaves no false alarm);
    - no acquire finds an older generation than one already committed (a lost update);
    - no token commits a generation newer than what a newer token found when it acquired (a stale write).
    """
    violations: list[str] = []
    acquires: dict[Any, list[dict]] = defaultdict(list)
    commits: dict[Any, list[dict]] = defaultdict(list)
    live_until: dict[tuple, datetime] = {}
    released: set[tuple] = set()
    newest_token: dict[Any, Any] = {}
    committed: dict[Any, int] = {}  # volume -> the generation it is known to be at
    for line in lines:
        if line.get("outcome") != "ok":
            continue
        op, volume, token = line.get("op"), line.get("volume"), line.get("token")
        if op == "acquire":
            acquires[volume].append(line)
            if volume in newest_token and not token > newest_token[volume]:
                violations.append(f"volume {volume}: token {token} acquired after token {newest_token[volume]}")
            newest_token[volume] = max(token, newest_token.get(volume, token))
            base = line.get("base")
            if base is not None and volume in committed and base < committed[volume]:
                violations.append(
                    f"volume {volume}: token {token} acquired at generation {base}, but generation "
                    f"{committed[volume]} was already committed (a lost update)"
                )
            if base is not None:
                committed[volume] = max(base, committed.get(volume, base))
        if op in ("acquire", "renew") and _time(line.get("expires_at")):
            expires = _time(line["expires_at"])
            live_until[(volume, token)] = max(expires, live_until.get((volume, token), expires))
        elif op == "release":
            released.add((volume, token))
        elif op == "commit":
            commits[volume].append(line)
            parent, generation = line["parent"], line["generation"]
            if generation != parent + 1:
                violations.append(f"volume {volume}: commit of generation {generation} names parent {parent}")
            if volume in committed and parent != committed[volume]:
                violations.append(
                    f"volume {volume}: token {token} committed generation {generation} on parent {parent}, but the "
                    f"previous committed generation is {committed[volume]}"
                )
            committed[volume] = generation

    for volume, taken in acquires.items():
        by_token = sorted(taken, key=lambda a: a["token"])
        # Overlaps: the longest-lived unreleased lease among the older tokens must have ended.
        longest: tuple[datetime, dict] | None = None
        for line in by_token:
            at = _time(line.get("acquired_at"))
            if at is not None and longest is not None and longest[0] > at:
                other = longest[1]
                violations.append(
                    f"volume {volume}: token {line['token']} ({line.get('holder')}) acquired at {at} while token "
                    f"{other['token']} ({other.get('holder')}) was live until {longest[0]}"
                )
            key = (volume, line["token"])
            if key not in released and key in live_until and (longest is None or live_until[key] > longest[0]):
                longest = (live_until[key], line)
        # Stale writes: the oldest generation any newer token found when it acquired.
        tokens = [a["token"] for a in by_token]
        oldest_base_after: list[tuple[int, dict] | None] = [None] * (len(by_token) + 1)
        for i in range(len(by_token) - 1, -1, -1):
            found, later = by_token[i].get("base"), oldest_base_after[i + 1]
            mine = (found, by_token[i]) if found is not None else None
            oldest_base_after[i] = min((x for x in (mine, later) if x), key=lambda x: x[0], default=None)
        for commit in commits.get(volume, []):
            newer = oldest_base_after[bisect_right(tokens, commit["token"])]
            if newer is not None and newer[0] < commit["generation"]:
                violations.append(
                    f"volume {volume}: token {commit['token']} committed generation {commit['generation']} after "
                    f"token {newer[1]['token']} had acquired the volume at generation {newer[0]} (a stale write)"
                )
    return violations


def read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(text) for text in fh if text.strip()]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m volumes.engine.history FILE", file=sys.stderr)
        return 2
    lines = read(argv[0])
    violations = check(lines)
    for violation in violations:
        print(violation)
    print(f"{len(lines)} operations, {len(violations)} violations", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
