"""Volume mounts of one job: what a mount is, where it appears, and the links of unsandboxed runs.

A mount path is relative (`data`, `a/b c`), resolved against the script's working directory, or
absolute (sandbox only) under `/tmp/`, `/mnt/`, `/opt/`, `/home/` or `/data/`. The annotation parser
has validated it already; `check_mounts` repeats the cheap checks so the runner never creates a link
or a mount point outside the job's directories, and also refuses one mount inside another (the
inner mount point would otherwise be created inside the outer volume and be committed with it).

Without a sandbox each mount is a symlink `<workdir>/<mount_path>` -> the volume's cache directory
when the worker is not root; on a root worker the script runs as a job uid of its own and each
mount is a bind mount at that path in a private mount namespace (see `identity.py`). Either way a
read-only mount is not enforced by the OS there: the caller names what the job changed in the job
log and restores the cache after the job (read-only volumes are never pushed). With the sandbox
each mount is a bind mount, read-only ones really read-only (see `sandbox.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..exceptions import InvalidPath

ABSOLUTE_ROOTS = ("/tmp/", "/mnt/", "/opt/", "/home/", "/data/")
RUNNER_DIR = ".volumes-runner"  # wrapper, script, args and result files; not usable as a mount path


@dataclass(frozen=True)
class Mount:
    host_dir: Path  # the volume's directory in the worker cache (already populated)
    mount_path: str  # relative ('data', 'a/b c') or absolute (sandbox only)
    read_only: bool
    shared: bool = False  # a reader's snapshot shared with other jobs: must be a read-only mount, never chowned


def _normalised(mount_path: str, *, sandbox: bool) -> PurePosixPath:
    if not isinstance(mount_path, str) or not mount_path.strip() or "\0" in mount_path:
        raise InvalidPath(f"mount path {mount_path!r} is empty or not a valid path")
    path = PurePosixPath(mount_path)
    if ".." in path.parts:
        raise InvalidPath(f"mount path {mount_path!r} must not contain '..'")
    if path.is_absolute():
        if not sandbox:
            raise InvalidPath(
                f"mount path {mount_path!r} is absolute; absolute mount paths need the `sandbox` annotation "
                "(without it a volume is mounted at a path relative to the working directory, e.g. 'data')"
            )
        text = str(path)
        if not any(text.startswith(root) and len(text) > len(root) for root in ABSOLUTE_ROOTS):
            raise InvalidPath(
                f"mount path {mount_path!r} must be relative or lie under one of {', '.join(ABSOLUTE_ROOTS)}"
            )
        return path
    if str(path) == ".":
        raise InvalidPath(f"mount path {mount_path!r} names the working directory itself; give a folder name")
    if path.parts[0] == RUNNER_DIR:
        raise InvalidPath(f"mount path {mount_path!r} is reserved for the runner's own files")
    return path


def sandbox_target(mount: Mount, cwd: str) -> str:
    """The absolute path of the mount inside the sandbox; relative paths resolve against `cwd`."""
    path = _normalised(mount.mount_path, sandbox=True)
    return str(path if path.is_absolute() else PurePosixPath(cwd) / path)


def check_mounts(mounts: list[Mount], *, sandbox: bool, cwd: str = "/tmp") -> list[PurePosixPath]:
    """Validate every mount and their combination; return where each one appears.

    Without sandbox the returned paths are relative to the working directory; with it they are
    absolute paths inside the sandbox (`cwd` is the sandbox working directory).
    """
    places: list[PurePosixPath] = []
    for mount in mounts:
        path = _normalised(mount.mount_path, sandbox=sandbox)
        if sandbox:
            if ":" in mount.mount_path or ":" in str(mount.host_dir):
                raise InvalidPath(f"mount path {mount.mount_path!r}: the sandbox cannot mount a path containing ':'")
            path = PurePosixPath(sandbox_target(mount, cwd))
            if PurePosixPath("/tmp", RUNNER_DIR) in (path, *path.parents):
                raise InvalidPath(f"mount path {mount.mount_path!r} is reserved for the runner's own files")
        if not Path(mount.host_dir).is_dir():
            raise InvalidPath(f"the directory of the volume mounted at {mount.mount_path!r} does not exist")
        for other, other_mount in zip(places, mounts):
            if path == other:
                raise InvalidPath(f"two volumes are mounted at the same path {mount.mount_path!r}")
            if other in path.parents or path in other.parents:
                inner, outer = (mount, other_mount) if other in path.parents else (other_mount, mount)
                raise InvalidPath(
                    f"mount path {inner.mount_path!r} lies inside mount path {outer.mount_path!r}; "
                    "volumes cannot be nested"
                )
        places.append(path)
    return places


def link_mounts(mounts: list[Mount], workdir: Path) -> None:
    """Create `workdir/<mount_path>` -> host_dir for each mount (no sandbox; relative paths only)."""
    for mount, relative in zip(mounts, check_mounts(mounts, sandbox=False)):
        link = Path(workdir) / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(link):
            raise InvalidPath(f"mount path {mount.mount_path!r} already exists in the working directory")
        os.symlink(Path(mount.host_dir).resolve(), link, target_is_directory=True)
