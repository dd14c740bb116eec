"""Named crash points: VOLUMES_CRASH_AT="name:n" kills this process with SIGKILL at the n-th hit.

Zero cost when the variable is unset (one comparison with None).
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("VOLUMES_CRASH_AT") or None
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    if _SPEC is None:
        return
    wanted, _, nth = _SPEC.partition(":")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
