"""Runner tests: real processes (python, bash, bun, nsjail), no Django, no mocks.

Run them alone with `python -m pytest tests/runner -p no:django --noconftest -q`
(tests/conftest.py needs Django).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volumes.runner import Mount, RunResult, run_script


@dataclass
class Run:
    result: RunResult
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def value(self) -> Any:
        assert self.result.error == "", f"the run failed: {self.result.error}\n" + "\n".join(self.lines)
        return self.result.result

    @property
    def error(self) -> str:
        return self.result.error

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def run(language: str, content: str, workdir: Path, args: dict | None = None, mounts: list[Mount] | None = None,
        *, sandbox: bool = False, **options: Any) -> Run:
    lines: list[str] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            lines.append(line)

    started = time.monotonic()
    result = run_script(language, content, args or {}, mounts or [], sandbox=sandbox, workdir=workdir, log=log, **options)
    return Run(result, lines, time.monotonic() - started)


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains `marker` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry))
    return found
