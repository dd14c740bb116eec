"""Named crash points: VOLUMES_CRASH_AT="name:n" kills this process with SIGKILL at the n-th hit;
VOLUMES_PAUSE_AT="name:n" stops it with SIGSTOP there (a paused process, until someone sends SIGCONT).

Zero cost when the variables are unset (one comparison with None).
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("VOLUMES_CRASH_AT") or None
_PAUSE_SPEC = os.environ.get("VOLUMES_PAUSE_AT") or None
_hits: dict[str, int] = {}


def _hit(spec: str, name: str) -> bool:
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return False
    key = f"{spec}/{name}"
    _hits[key] = _hits.get(key, 0) + 1
    return _hits[key] == int(nth or 1)


def crash_point(name: str) -> None:
    if _SPEC is not None and _hit(_SPEC, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _PAUSE_SPEC is not None and _hit(_PAUSE_SPEC, name):
        os.kill(os.getpid(), signal.SIGSTOP)


def injecting() -> bool:
    """Whether a crash or pause point is set (work is then kept in this process, where the point expects it)."""
    return _SPEC is not None or _PAUSE_SPEC is not None
