"""Idmapped mounts (Linux >= 5.12): a job's volumes shown as its own user's without chowning a file.

A root worker keeps its cache owned by itself. A job runs as another uid (a job uid of its own, see
identity.py, or 65534 in the sandbox), so before idmapped mounts every volume tree was chowned to that
uid for the run and back afterwards (`sandbox.owned_by`): two lchowns and lstats a file, new ctimes
and so the hashes of untouched files carried over by a second walk. Instead, `detached_mounts` clones
each tree (open_tree with OPEN_TREE_CLONE | AT_RECURSIVE, the tree's own folder, never following a
symlink) into a detached mount and gives it an idmapping (mount_setattr with MOUNT_ATTR_IDMAP) through
a user namespace whose uid_map and gid_map are `<worker's id> <job's id> 1`:

- on disk the worker's id is the id inside that namespace, and the mount shows it as the outside id,
  the job's: the job sees every file as its own, and what it creates lands on disk as the worker's;
- any other on-disk owner is unmapped (shown as the overflow id 65534 and not writable through the
  mount), and the job can chown to nothing but its own id (no CAP_CHOWN), which maps back to the
  worker: no file of the job ends up owned by anyone but the worker;
- the mounts are also nosuid (read-only volumes read-only): a setuid bit the job sets gives nothing
  inside, and the engine masks it at commit and at the next pull (the tree lies in a 0700 folder of
  the worker's meanwhile).

The detached mounts are attached (move_mount) by the job's own process in its private mount
namespace, before it drops root (`identity.enter`, and a private namespace around nsjail for the
sandbox, whose binds of them keep the idmapping). They are gone with that namespace when the job
ends; an unattached one goes when its file descriptor is closed.

`VOLUMES_IDMAP=off` turns them off; so do a machine other than x86_64 (the syscall numbers below), a
kernel or filesystem without them (ENOSYS, EINVAL, EPERM, ...): then the caller chowns as before,
and the job log says which way was taken.
"""
from __future__ import annotations

import ctypes
import os
import platform
import signal
from pathlib import Path

from ..exceptions import VolumesError

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
AT_FDCWD, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x100, 0x1000, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_IDMAP = 0x1, 0x2, 0x4, 0x100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
CLONE_NEWUSER = 0x10000000


class IdmapUnavailable(VolumesError):
    """Idmapped mounts cannot be used here; the message says why (the caller chowns instead)."""


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _call(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def check() -> None:
    """Raise IdmapUnavailable when this worker is not to try idmapped mounts at all."""
    setting = os.environ.get("VOLUMES_IDMAP", "").strip().lower()
    if setting in ("off", "false", "0", "no"):
        raise IdmapUnavailable(f"turned off by VOLUMES_IDMAP={setting}")
    if platform.machine() != "x86_64":
        raise IdmapUnavailable(f"not used on {platform.machine()} machines, only x86_64")
    if os.geteuid() != 0:
        raise IdmapUnavailable("the worker is not root")


def user_namespace(disk_uid: int, disk_gid: int, uid: int, gid: int) -> int:
    """An fd of a new user namespace whose uid 'disk_uid' is `uid` outside (gid likewise).

    A forked child unshares CLONE_NEWUSER and waits; we write its maps, open its namespace and let it go."""
    libc = _libc()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only unshares, reports and waits
        status = 1
        try:
            # Keep nothing else of the parent open: a fork by another thread would otherwise hold our
            # go_w (and this child another's), and children waiting on each other never exit.
            os.closerange(3, min(ready_w, go_r))
            os.closerange(min(ready_w, go_r) + 1, max(ready_w, go_r))
            os.closerange(max(ready_w, go_r) + 1, 65536)
            if libc.unshare(CLONE_NEWUSER) == 0:
                os.write(ready_w, b"1")
                os.read(go_r, 1)
                status = 0
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("could not create a user namespace (unshare CLONE_NEWUSER failed)")
        Path(f"/proc/{pid}/uid_map").write_text(f"{disk_uid} {uid} 1\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"{disk_gid} {gid} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(go_w)
        try:
            os.kill(pid, signal.SIGKILL)  # its namespace lives on in the fd we opened
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def detached_mounts(trees: list[tuple[Path, bool]], uid: int, gid: int) -> list[int]:
    """For each (tree, read_only): a detached idmapped mount of it (an fd) showing the worker's files as uid:gid's.

    Raises IdmapUnavailable (with the reason) when they cannot be made. `close` the fds after the run: a
    mount attached meanwhile stays where it was attached, an unattached one goes."""
    check()
    libc = _libc()
    fds: list[int] = []
    try:
        userns = user_namespace(os.geteuid(), os.getegid(), uid, gid)
        try:
            for tree, read_only in trees:
                fd = _call(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(tree),
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW),
                           f"open_tree {tree}")
                fds.append(fd)
                attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                                  | (MOUNT_ATTR_RDONLY if read_only else 0), 0, 0, userns)
                _call(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr),
                                   ctypes.sizeof(attr)), f"mount_setattr {tree}")
        finally:
            os.close(userns)
    except OSError as exc:
        close(fds)
        raise IdmapUnavailable(str(exc)) from exc
    return fds


def close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def attach(libc: ctypes.CDLL, fd: int, target: bytes) -> None:
    """Attach a detached mount at `target` (in a preexec, in a private mount namespace)."""
    libc.syscall.restype = ctypes.c_long
    _call(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target!r}")
