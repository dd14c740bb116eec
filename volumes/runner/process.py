"""Run one job's script as a subprocess, streaming its output, with its volumes mounted.

`run_script` writes the script and its wrapper (see `wrappers.py`), mounts the volumes (symlinks
in `workdir` without sandbox, see `mounts.py`; bind mounts under nsjail with it, see `sandbox.py`),
starts the process in a new session, streams its stdout and stderr line by line into `log` (from
one reader thread, unprefixed), and returns a `RunResult`.

Stopping: when `stop` is set (the lease renewer: lease lost, job cancelled) or `timeout` seconds
have passed, the whole process group is killed with SIGKILL within about 0.1 s and the result's
error is `stop_reason()` (default "stopped") or "timed out after N s". Under nsjail the jailed
processes live in their own PID namespace and die with nsjail. Without the sandbox a process that
left the group on purpose (setsid, a daemon) is not found.

Without the sandbox the script gets the worker's environment plus `env`; in the sandbox only
PATH, HOME=/tmp, TMPDIR=/tmp, LANG plus `env`.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import sandbox as jail
from .mounts import RUNNER_DIR, Mount, check_mounts, link_mounts, sandbox_target
from .wrappers import find_runtime, read_outcome, write_program

MAX_LINE = 64 * 1024
POLL = 0.1


@dataclass
class RunResult:
    exit_code: int
    result: Any  # parsed JSON result or None
    error: str  # '' on success; else a one-line reason
    started_at: float  # time.time() when the script process started
    finished_at: float  # ... and ended


def run_script(
    language: str, content: str, args: dict, mounts: list[Mount], *, sandbox: bool, workdir: Path,
    log: Callable[[str], None], stop: threading.Event | None = None, stop_reason: Callable[[], str] | None = None,
    timeout: float | None = None, network: bool = True, env: dict[str, str] | None = None,
) -> RunResult:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = find_runtime(language, sandbox=sandbox)  # also refuses an unknown language
    if not sandbox:
        link_mounts(mounts, workdir)
        environment = {**os.environ, **(env or {})}
        program = write_program(
            language, content, args, runtime, files_dir=workdir / RUNNER_DIR,
            files_dir_inside=str(workdir / RUNNER_DIR), executable=str(runtime.executable), environment=environment,
        )
        return _supervise(
            program.argv, cwd=workdir, env={**environment, **program.env, **(env or {})}, program=program,
            log=log, stop=stop, stop_reason=stop_reason, timeout=timeout,
        )

    cwd = runtime.sandbox_cwd
    check_mounts(mounts, sandbox=True, cwd=cwd)
    tmp_dir = workdir / "sandbox-tmp"
    tmp_dir.mkdir(exist_ok=True)
    files_dir = tmp_dir / RUNNER_DIR
    executable = str(runtime.executable)
    binds: list[jail.Bind] = []
    if runtime.kind in ("bun", "deno"):
        executable = f"{jail.RUNTIME_DIR}/{runtime.kind}"
        binds.append(jail.Bind(jail.runtime_binary(runtime.executable, files_dir), executable, True))
    environment = {**jail.base_env(), **(env or {})}
    program = write_program(
        language, content, args, runtime, files_dir=files_dir, files_dir_inside=f"{jail.SANDBOX_TMP}/{RUNNER_DIR}",
        executable=executable, environment=environment,
    )
    (tmp_dir / Path(cwd).relative_to(jail.SANDBOX_TMP)).mkdir(parents=True, exist_ok=True)
    for mount in mounts:
        target = sandbox_target(mount, cwd)
        if target.startswith(jail.SANDBOX_TMP + "/"):  # its mount point lives in our tmp dir: make it now
            (tmp_dir / Path(target).relative_to(jail.SANDBOX_TMP)).mkdir(parents=True, exist_ok=True)
        binds.append(jail.Bind(Path(mount.host_dir).resolve(), target, mount.read_only))
    _, _, outside_uid, outside_gid = jail.ids()
    if os.geteuid() == 0:
        jail.chown_tree(tmp_dir, outside_uid, outside_gid)
    log_file = workdir / "nsjail.log"
    command = jail.nsjail_command(
        program.argv, tmp_dir=tmp_dir, cwd=cwd, binds=binds, env={**environment, **program.env, **(env or {})},
        network=network, time_limit=(timeout + 5) if timeout else None, log_file=log_file,
    )
    with jail.owned_by_sandbox([Path(m.host_dir) for m in mounts]):
        run = _supervise(
            command, cwd=workdir, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, program=program, log=log,
            stop=stop, stop_reason=stop_reason, timeout=timeout, pipe_owner=(outside_uid, outside_gid),
        )
    if run.exit_code == 255:  # nsjail itself failed, or the script exited with 255: its log tells
        run.error = jail.failure(log_file) or run.error
    return run


class _Streams:
    """One thread reads both pipes into `log` line by line, remembering the last non-empty line of each.

    Lines keep their order within a stream; across the two streams they come in the order the
    reads see them (stdout first when both have data), which is as close as two pipes allow."""

    def __init__(self, log: Callable[[str], None], pipes: dict[str, int]) -> None:
        self.log = log
        self.last = {name: "" for name in pipes}
        self._pipes = pipes
        self._thread = threading.Thread(target=self._pump, name="script-output", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        buffers = {fd: b"" for fd in self._pipes.values()}
        names = {fd: name for name, fd in self._pipes.items()}
        with selectors.DefaultSelector() as selector:
            for fd in buffers:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                for key, _ in sorted(selector.select(), key=lambda item: item[0].fd):
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        os.close(fd)
                        if buffers[fd]:
                            self._emit(names[fd], buffers[fd])
                        continue
                    lines = (buffers[fd] + chunk).split(b"\n")
                    buffers[fd] = lines.pop()
                    while len(buffers[fd]) >= MAX_LINE:  # a very long line is split
                        lines.append(buffers[fd][:MAX_LINE])
                        buffers[fd] = buffers[fd][MAX_LINE:]
                    for line in lines:
                        self._emit(names[fd], line)

    def _emit(self, name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if line.strip():
            self.last[name] = line
        try:
            self.log(line)
        except Exception:  # a failing log sink must not stop the pipes from draining
            pass

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)


def _die_with_parent() -> None:
    """In the child: be killed when the worker dies (SIGKILL, crash), so no script outlives its lease."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _supervise(
    argv: list[str], *, cwd: Path, env: dict[str, str], program: Any, log: Callable[[str], None],
    stop: threading.Event | None, stop_reason: Callable[[], str] | None, timeout: float | None,
    pipe_owner: tuple[int, int] | None = None,
) -> RunResult:
    def reason() -> str:
        return (stop_reason() if stop_reason else "") or "stopped"

    if stop is not None and stop.is_set():
        now = time.time()
        return RunResult(-1, None, reason(), now, now)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        if pipe_owner and os.geteuid() == 0:
            # The sandbox user reopens its stdout/stderr through /dev/stdout -> /proc/self/fd/1,
            # which checks the pipe's owner: give the pipes to it.
            for fd in (out_w, err_w):
                os.fchown(fd, *pipe_owner)
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            start_new_session=True, close_fds=True, preexec_fn=_die_with_parent,
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    started_at = time.time()
    streams = _Streams(log, {"stdout": out_r, "stderr": err_r})
    deadline = time.monotonic() + timeout if timeout else None
    killed = ""
    while True:
        try:
            process.wait(POLL)
            break
        except subprocess.TimeoutExpired:
            pass
        if stop is not None and stop.is_set():
            killed = reason()
        elif deadline is not None and time.monotonic() >= deadline:
            killed = f"timed out after {timeout:g} s"
        if killed:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            break
    finished_at = time.time()
    streams.join(2.0 if not killed else 0.5)  # a process that escaped the group may hold the pipes open
    if killed:
        return RunResult(process.returncode, None, killed, started_at, finished_at)
    result, error = read_outcome(program, process.returncode, streams.last["stdout"], streams.last["stderr"])
    return RunResult(process.returncode, result, error, started_at, finished_at)
