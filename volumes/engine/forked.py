"""Work shared with a forked process: what a sync does per file is Python under the GIL, which threads cannot
share and a second process can (engine/sync.py: a big scan's hashing, a big pull, a big push's uploads).

The child runs one function that makes file system calls and returns marshalled bytes; it never touches the
database, logs or the parent's buffers, dies with its parent, and leaves with os._exit. A child that fails costs
only time: the caller does its share again, and so raises the same error itself.

`share` splits a list between the two by runs taken from one queue, not by halves: a forked process is the
slower of the two (every page either writes is copied first), and with halves the parent waited for it.
"""
from __future__ import annotations

import ctypes
import gc
import marshal
import os
import signal
import struct
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Sequence

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


_RUN = struct.Struct("=I")  # a run's number on the queue
_MAX_RUNS = 8_192  # 32 KB of numbers: the queue is written whole before the fork, within a pipe's 64 KB


def share(items: Sequence, do: Callable[[list], list], landed: Callable[[Any, Any], None] | None = None,
          size: int = 64, in_child: Callable[[], ContextManager] = nullcontext) -> list:
    """`do` over `items` in this process and a forked one: their results, in order. `do` takes a run of items and
    gives their results in order (marshallable: the child sends them back); `landed(item, result)`, if given, is
    called here for every item as its result is known here. Both processes take runs of up to `size` items from
    one queue until it is empty, so the faster one does more and neither waits long for the other. The child runs
    inside `in_child()`. Where no process can be forked, or the child fails, this process does what the child took
    (and so raises the same error, if there is one)."""
    size = max(1, min(size, -(-len(items) // 16)), -(-len(items) // _MAX_RUNS))  # 16 runs or more to balance
    runs = [list(items[i:i + size]) for i in range(0, len(items), size)]
    child = None
    if len(runs) > 1 and can_share():
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, b"".join(_RUN.pack(i) for i in range(len(runs))))
        finally:
            os.close(write_fd)  # an empty queue reads as its end

        def theirs() -> bytes:
            done = {}
            with in_child():
                while taken := os.read(read_fd, _RUN.size):
                    i = _RUN.unpack(taken)[0]
                    done[i] = do(runs[i])
            return marshal.dumps(done)

        child = run_in_child(theirs)
        if child is None:
            os.close(read_fd)
    if child is None:
        results = do(list(items))
        if landed is not None:
            for item, result in zip(items, results):
                landed(item, result)
        return results
    by_run: dict[int, list] = {}
    try:
        while taken := os.read(read_fd, _RUN.size):
            i = _RUN.unpack(taken)[0]
            by_run[i] = do(runs[i])
            if landed is not None:
                for item, result in zip(runs[i], by_run[i]):
                    landed(item, result)
        done, child = result_of(child), None
    finally:
        os.close(read_fd)
        if child is not None:
            stop(child)
    there = marshal.loads(done) if done is not None else {}
    for i, run in enumerate(runs):
        if i in by_run:
            continue
        by_run[i] = there.get(i)
        if by_run[i] is None:  # the child failed: its runs are done here
            by_run[i] = do(run)
        if landed is not None:
            for item, result in zip(run, by_run[i]):
                landed(item, result)
    return [result for i in range(len(runs)) for result in by_run[i]]
