"""The reliability report card: suites add figures while they run; the run prints them at its end.

Sizes: `VOLUMES_RELIABILITY=nightly` makes every suite larger (`scale(ci, nightly)`); CI uses the default.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

CARD = Path(__file__).resolve().parents[2] / "test-artifacts" / "report-card.jsonl"
NIGHTLY = os.environ.get("VOLUMES_RELIABILITY", "ci") == "nightly"


def scale(ci, nightly):
    return nightly if NIGHTLY else ci


def figure(suite: str, name: str, value, unit: str = "", target: str = "", ok: bool | None = None) -> None:
    """Add one figure, e.g. figure("leases", "overlapping leases", 0, target="0", ok=True)."""
    CARD.parent.mkdir(parents=True, exist_ok=True)
    line = {"suite": suite, "name": name, "value": value, "unit": unit, "target": target, "ok": ok}
    with open(CARD, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")


def reset() -> None:
    CARD.unlink(missing_ok=True)


def render() -> list[str]:
    if not CARD.exists():
        return []
    rows = [json.loads(line) for line in CARD.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [f"size: {'nightly' if NIGHTLY else 'ci'} (VOLUMES_RELIABILITY=nightly for the larger run)"]
    for row in sorted(rows, key=lambda r: r["suite"]):
        value = f"{row['value']:,.3g}" if isinstance(row["value"], float) else f"{row['value']:,}" \
            if isinstance(row["value"], int) else str(row["value"])
        mark = {True: "ok  ", False: "FAIL", None: "    "}[row["ok"]]
        target = f"  (target {row['target']})" if row["target"] else ""
        lines.append(f"{mark} {row['suite']:<10} {row['name']:<58} {value} {row['unit']}{target}")
    return lines
