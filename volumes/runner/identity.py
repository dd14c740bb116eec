"""Who an unsandboxed job runs as on a root worker: a uid of its own, never root.

Each running job takes a free uid from a range (default 1900000000-1900000999, `VOLUMES_JOB_UIDS`),
held by an flock in a root-only folder, so two jobs on one machine never share a uid and cannot
signal, trace or read each other; their working folders are 0700 and owned by their own uid. The
script starts in a private mount namespace (made before root is dropped) where:

- each volume is mounted at `<workdir>/<mount path>` (read-only volumes read-only) through an
  idmapped mount that shows the worker's files as the job uid's (see idmap.py), or, where those
  are not available, bind-mounted with its tree chowned to the job uid for the run and back to
  the worker afterwards (never following symlinks);
- the worker's data folder, cache folder, `VOLUMES_STORAGE_BASE_DIR` and every filesystem storage's
  root (Celery workers read them from the database) are covered by an empty read-only tmpfs: the
  embedded SQLite database, the secret key, the broker folder, other workspaces' cached volumes and
  their blobs are not there for the job.

The job cannot read `/proc/<worker pid>/environ` (another uid). When the job ends, every process
still running as its uid is killed, so nothing it started (a daemon that left the process group)
outlives it.

A root worker without CAP_SYS_ADMIN (a default Docker container) cannot make the mount namespace:
there the job runs as the worker, as before, and its log says so (see `can_isolate`).

What it does not do (use the sandbox, VOLUMES_SANDBOX_ALL, for that): hide the machine's
world-readable files (the code, /etc), or the network: an unsandboxed job can connect to whatever
the worker can (PostgreSQL, Redis, the web app, the cloud metadata address) and log in where those
trust the machine. Python runs the worker's interpreter when the job uid may execute it, otherwise
the system's /usr/bin/python3 (as in the sandbox).
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..exceptions import VolumesError

DEFAULT_RANGE = (1_900_000_000, 1000)
LOCK_DIR = Path("/run/volumes-job-uids")
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


class JobUserUnavailable(VolumesError):
    code = "job_user_unavailable"
    status = 503


@dataclass(frozen=True)
class JobUser:
    uid: int
    gid: int


def parse_range(text: str) -> tuple[int, int]:
    """'FIRST-LAST' -> (first, count); '' -> the default range."""
    if not text:
        return DEFAULT_RANGE
    first, _, last = str(text).partition("-")
    try:
        start, end = int(first), int(last or first)
    except ValueError:
        start = end = -1
    if not 0 < start <= end:
        raise JobUserUnavailable(f"VOLUMES_JOB_UIDS must look like 1900000000-1900000999, not {text!r}")
    return start, end - start + 1


def _lock_dir() -> Path:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    info = LOCK_DIR.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise JobUserUnavailable(f"{LOCK_DIR} must be a folder of root with mode 0700")
    return LOCK_DIR


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def kill_all(uid: int) -> None:
    """SIGKILL every process running as `uid` until none is left (a fork may race one pass)."""
    for _ in range(100):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


@contextmanager
def job_user(uid_range: tuple[int, int] = DEFAULT_RANGE) -> Iterator[JobUser]:
    """Hold a free job uid (root only) for the block; its processes are killed before and after."""
    first, count = uid_range
    folder = _lock_dir()
    for uid in range(first, first + count):
        handle = open(folder / str(uid), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            kill_all(uid)  # leftovers of a worker that died mid-job
            yield JobUser(uid, uid)
        finally:
            kill_all(uid)
            handle.close()
        return
    raise JobUserUnavailable(f"all {count} job uids from {first} are in use on this worker; widen VOLUMES_JOB_UIDS")


_isolation: bool | None = None


def can_isolate() -> bool:
    """Whether this worker may give jobs a user and mount namespace of their own (root with CAP_SYS_ADMIN;
    a container without it is root but may not). Probed once per process in a forked child."""
    global _isolation
    if os.geteuid() != 0:
        return False
    if _isolation is None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded before the fork
        pid = os.fork()
        if pid == 0:  # the child only makes the call and exits
            os._exit(0 if libc.unshare(CLONE_NEWNS) == 0 else 1)
        _, status = os.waitpid(pid, 0)
        _isolation = os.waitstatus_to_exitcode(status) == 0
    return _isolation


def executable_by_others(path: Path) -> bool:
    """True when a user that is neither owner nor in the group can execute `path`."""
    try:
        real = Path(path).resolve(strict=True)
        if real.stat().st_mode & 0o005 != 0o005:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in real.parents)
    except OSError:
        return False


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def private_mounts() -> ctypes.CDLL:
    """In a preexec: enter a private mount namespace (nothing mounted there reaches the host's); returns libc."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    return libc


def enter(user: JobUser, binds: list[tuple[str, str, bool]], hide: list[str],
          idmapped: list[tuple[int, str]] = ()) -> Callable[[], None]:
    """A preexec function: private mounts (volumes bound in, read-only ones read-only, or their detached
    idmapped mounts attached, see idmap.py; `hide` covered), then drop to `user` for good."""
    from . import idmap

    encoded = [(os.fsencode(src), os.fsencode(dst), read_only) for src, dst, read_only in binds]
    attached = [(fd, os.fsencode(dst)) for fd, dst in idmapped]
    hidden = [os.fsencode(folder) for folder in hide]

    def preexec() -> None:
        libc = private_mounts()
        for src, dst, read_only in encoded:
            _check(libc.mount(src, dst, None, MS_BIND, None), f"bind {src!r}")
            if read_only:
                _check(libc.mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
                       f"remount {dst!r} read-only")
        for fd, dst in attached:
            idmap.attach(libc, fd, dst)
        for folder in hidden:
            _check(libc.mount(b"tmpfs", folder, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                              b"size=4k,mode=0755"), f"hide {folder!r}")
        os.setgroups([])
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid: a credential change clears it

    return preexec
