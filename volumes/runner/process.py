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

Environment: a job never sees the worker's environment. Without the sandbox the script gets
PATH (the worker's), LANG, TZ, HOME and TMPDIR (private folders in the job's runner folder) plus
`env`; in the sandbox PATH, HOME=/tmp, TMPDIR=/tmp, LANG, TZ plus `env`. The caller puts the job's
own variables and the operator's allow-listed ones into `env` (see `job.py`).
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..exceptions import InvalidPath, VolumesError
from . import identity, idmap
from . import network as net
from . import sandbox as jail
from .mounts import RUNNER_DIR, Mount, check_mounts, link_mounts, sandbox_target
from .wrappers import Runtime, find_runtime, read_outcome, write_program

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
    timeout: float | None = None, network: str = "none", allow_networks: list[str] | None = None,
    env: dict[str, str] | None = None, run_as: identity.JobUser | None = None, hide: list[Path] | None = None,
    untouched: dict | None = None,
) -> RunResult:
    """`network` is the sandbox's network mode (see network.py); a job without the sandbox has the worker's network.

    `run_as` (root workers, no sandbox): run as that job user with the volumes bound into `workdir` and the
    folders in `hide` covered, see identity.py. `untouched` collects the files a run as another user did not
    touch (see `sandbox.owned_by`), so the caller keeps their hashes."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = find_runtime(language, sandbox=sandbox)  # also refuses an unknown language
    if not sandbox and run_as is not None:
        return _run_as_job_user(language, content, args, mounts, runtime, workdir, log, run_as, hide or [], env or {},
                                untouched, stop=stop, stop_reason=stop_reason, timeout=timeout)
    if not sandbox:
        link_mounts(mounts, workdir)
        environment = {**minimal_env(workdir / RUNNER_DIR), **(env or {})}
        program = write_program(
            language, content, args, runtime, files_dir=workdir / RUNNER_DIR,
            files_dir_inside=str(workdir / RUNNER_DIR), executable=str(runtime.executable), environment=environment,
        )
        return _supervise(
            program.argv, cwd=workdir, env={**environment, **program.env, **(env or {})}, program=program,
            log=log, stop=stop, stop_reason=stop_reason, timeout=timeout,
        )

    cwd = runtime.sandbox_cwd
    net.check_mode(network)
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
    targets = [sandbox_target(mount, cwd) for mount in mounts]
    for target in targets:
        if target.startswith(jail.SANDBOX_TMP + "/"):  # its mount point lives in our tmp dir: make it now
            (tmp_dir / Path(target).relative_to(jail.SANDBOX_TMP)).mkdir(parents=True, exist_ok=True)
    _, _, outside_uid, outside_gid = jail.ids()
    if os.geteuid() == 0:
        jail.chown_tree(tmp_dir, outside_uid, outside_gid)
    log_file = workdir / "nsjail.log"
    with ExitStack() as stack:
        attached = stack.enter_context(_volumes_of(outside_uid, outside_gid, mounts, log, untouched))
        sources = [Path(mount.host_dir).resolve() for mount in mounts]
        preexec = None
        if attached:  # nsjail binds each volume from its idmapped mount, attached in a private namespace
            sources = [workdir / "idmapped" / str(index) for index in range(len(mounts))]
            for point in sources:
                point.mkdir(parents=True)
            preexec = _attach_privately([(fd, str(point)) for fd, point in zip(attached, sources)])
        binds += [jail.Bind(source, target, mount.read_only) for source, target, mount in zip(sources, targets, mounts)]
        # "internet": nsjail joins a namespace we built and filtered; "none": nsjail makes its own, loopback only.
        prefix = (stack.enter_context(net.internet_namespace(allow_networks or [], workdir / "pasta.log"))
                  if network == "internet" else [])
        command = prefix + jail.nsjail_command(
            program.argv, tmp_dir=tmp_dir, cwd=cwd, binds=binds, env={**environment, **program.env, **(env or {})},
            network=network == "internet", time_limit=(timeout + 5) if timeout else None, log_file=log_file,
        )
        run = _supervise(
            command, cwd=workdir, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, program=program, log=log,
            stop=stop, stop_reason=stop_reason, timeout=timeout, pipe_owner=(outside_uid, outside_gid),
            preexec=preexec,
        )
    if run.exit_code == 255:  # nsjail itself failed, or the script exited with 255: its log tells
        run.error = jail.failure(log_file) or run.error
    return run


def _run_as_job_user(
    language: str, content: str, args: dict, mounts: list[Mount], runtime: Runtime, workdir: Path,
    log: Callable[[str], None], user: identity.JobUser, hide: list[Path], env: dict[str, str],
    untouched: dict | None, **supervision: Any,
) -> RunResult:
    binds = []
    for mount, relative in zip(mounts, check_mounts(mounts, sandbox=False)):
        point = workdir / relative
        if os.path.lexists(point):
            raise InvalidPath(f"mount path {mount.mount_path!r} already exists in the working directory")
        point.mkdir(parents=True)
        binds.append((str(Path(mount.host_dir).resolve()), str(point), mount.read_only))
    files_dir = workdir / RUNNER_DIR
    executable = runtime.executable
    if not identity.executable_by_others(executable):
        if runtime.kind == "python":
            executable = find_runtime("python", sandbox=True).executable  # the system's python3
        elif runtime.kind in ("bun", "deno"):
            executable = jail.runtime_binary(executable, files_dir / "runtime")
    environment = {**minimal_env(files_dir), **env}
    program = write_program(
        language, content, args, runtime, files_dir=files_dir, files_dir_inside=str(files_dir),
        executable=str(executable), environment=environment,
    )
    jail.chown_tree(workdir, user.uid, user.gid)
    covered: list[Path] = []
    inside_workdir = (workdir.resolve(), *workdir.resolve().parents)
    for folder in sorted({Path(folder).resolve() for folder in hide if Path(folder).is_dir()}):
        # Not a folder above the job's own (it would hide it), nor one inside a folder already covered.
        if folder not in inside_workdir and not any(done in folder.parents for done in covered):
            covered.append(folder)
    with _volumes_of(user.uid, user.gid, mounts, log, untouched) as attached:
        if attached:
            binds, idmapped = [], [(fd, target) for fd, (_, target, _) in zip(attached, binds)]
        else:
            idmapped = []
        try:
            return _supervise(
                program.argv, cwd=workdir, env={**environment, **program.env}, program=program, log=log,
                pipe_owner=(user.uid, user.gid),
                preexec=identity.enter(user, binds, [str(f) for f in covered], idmapped), **supervision,
            )
        except subprocess.SubprocessError as exc:  # the preexec step failed: never run the job as root instead
            raise identity.JobUserUnavailable(
                f"could not start the job as an unprivileged user ({exc}); the job was not run"
            ) from exc


@contextmanager
def _volumes_of(uid: int, gid: int, mounts: list[Mount], log: Callable[[str], None], untouched: dict | None
                ) -> Iterator[list[int]]:
    """Give the volumes to uid:gid for the run (root only): detached idmapped mounts (fds, one a mount, to attach
    in the job's mount namespace), or else [] after chowning the trees to uid:gid (and back after the block)."""
    if os.geteuid() != 0 or not mounts:
        yield []
        return
    trees = [(Path(m.host_dir).resolve(), m.read_only) for m in mounts]
    try:
        fds = idmap.detached_mounts(trees, uid, gid)
    except idmap.IdmapUnavailable as exc:
        if any(m.shared for m in mounts):  # chowning a snapshot other jobs read would take it from them
            raise VolumesError(f"could not mount a shared read-only snapshot for the job ({exc}); retry the job")
        log(f"volumes: {IDMAP_FALLBACK} (no idmapped mounts: {exc})")
        with jail.owned_by([tree for tree, _ in trees], uid, gid, untouched):
            yield []
        return
    log(f"volumes: {IDMAPPED}")
    try:
        yield fds
    finally:
        idmap.close(fds)


IDMAPPED = "idmapped mounts show them as the job user's (nothing chowned)"
IDMAP_FALLBACK = "chowned to the job user for the run and back after it"


def _attach_privately(idmapped: list[tuple[int, str]]) -> Callable[[], None]:
    """A preexec function for nsjail: a private mount namespace with the idmapped mounts attached."""
    targets = [(fd, os.fsencode(target)) for fd, target in idmapped]

    def preexec() -> None:
        libc = identity.private_mounts()
        for fd, target in targets:
            idmap.attach(libc, fd, target)
        _die_with_parent()

    return preexec


def minimal_env(runner_dir: Path) -> dict[str, str]:
    """The environment of an unsandboxed script before the job's own variables: nothing of the worker's
    but PATH, LANG and TZ; HOME and TMPDIR are fresh folders of the job (deleted with its workdir)."""
    home, tmp = runner_dir / "home", runner_dir / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "TZ": os.environ.get("TZ") or "UTC",
        "HOME": str(home),
        "TMPDIR": str(tmp),
    }


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
    pipe_owner: tuple[int, int] | None = None, preexec: Callable[[], None] | None = None,
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
            start_new_session=True, close_fds=True, preexec_fn=preexec or _die_with_parent,
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
