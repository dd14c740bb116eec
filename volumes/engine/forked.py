"""Work shared with a forked process: what a sync does per file is Python under the GIL, which threads cannot
share and a second process can (engine/sync.py: a big tree's scan, a cold pull from a local store).

The child runs one function that makes file system calls and returns marshalled bytes; it never touches the
database, logs or the parent's buffers, dies with its parent, and leaves with os._exit. A child that fails costs
only time: the caller does its share again, and so raises the same error itself.
"""
from __future__ import annotations

import ctypes
import gc
import os
import signal
from typing import Callable

from .faults import injecting

Child = tuple[int, int]  # (pid, the pipe its result comes on)
_libc: ctypes.CDLL | None = None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_share() -> bool:
    """Whether work may be shared: two cores or more, and no crash or pause point injected
    (tests/engine/test_crash.py stops the process that reaches a crash point, and expects it to be this one)."""
    return hasattr(os, "fork") and cores() > 1 and not injecting()


def run_in_child(work: Callable[[], bytes]) -> Child | None:
    """Fork a process that runs `work` and sends back the bytes it returns; None where no process can be forked."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork
    read_fd, write_fd = os.pipe()
    collecting = gc.isenabled()
    gc.disable()  # the child must never run a finalizer of the parent's garbage (a database connection's, say)
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        if collecting:
            gc.enable()
        return None
    if pid == 0:
        code = 1
        try:
            _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: it never outlives the sync it is part of
            os.close(read_fd)
            view = memoryview(work())
            while view:
                view = view[os.write(write_fd, view):]
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
    if collecting:
        gc.enable()
    os.close(write_fd)
    return pid, read_fd


def result_of(child: Child) -> bytes | None:
    """The child's bytes once it has finished, or None if it failed."""
    pid, read_fd = child
    chunks = []
    try:
        while chunk := os.read(read_fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by someone else: only a complete result loads
            status = 0
    return b"".join(chunks) if status == 0 and chunks else None


def stop(child: Child) -> None:
    """Kill the child and reap it (the caller failed while it worked)."""
    pid, read_fd = child
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    os.close(read_fd)
