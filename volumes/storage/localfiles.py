"""Plain file operations on this machine that the filesystem store and the sync share: a copy that needs no
second hash, and one flush for a whole filesystem."""
from __future__ import annotations

import ctypes
import errno
import os
import stat

from .base import CHUNK_SIZE

TMP_SUFFIX = ".volumes-tmp"  # temp files of unfinished writes in a filesystem store; never listed as keys


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says a file is the one hashed before: a write moves its ctime, a replace its inode."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def copy_if_unchanged(source: str, expected: list | tuple, dst: int) -> bool:
    """Copy `source` into the empty open file `dst` if it is, before and after the copy, the very file `expected`
    (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) describes: a file whose content was hashed under that
    stat needs no second hash (a write since would have moved its ctime). copy_file_range: a reflink where
    the filesystem can, else a copy in the kernel. False, `dst` left empty, when it is not that file."""
    key = tuple(expected)
    try:
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or stat_key(st) != key:
            return False
        copied = 0
        try:
            while copied < st.st_size and (n := os.copy_file_range(src, dst, st.st_size - copied)):
                copied += n
        except OSError:  # no copy_file_range here (another filesystem, an old kernel): plain copy
            os.lseek(src, 0, os.SEEK_SET)
            os.ftruncate(dst, 0)
            os.lseek(dst, 0, os.SEEK_SET)
            copied = 0
            while chunk := os.read(src, CHUNK_SIZE):
                copied += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view):]
        if copied == st.st_size and stat_key(os.fstat(src)) == key:
            return True
        os.ftruncate(dst, 0)  # changed while copied
        os.lseek(dst, 0, os.SEEK_SET)
        return False
    finally:
        os.close(src)


_libc = None
AT_FDCWD, RENAME_NOREPLACE = -100, 1


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def move_new(tmp: str, path: str) -> bool:
    """Give the file `tmp` the name `path` unless that name is taken (create-only: what is stored there stays); `tmp`
    is gone either way. True when it got the name. One renameat2(RENAME_NOREPLACE) where the filesystem has it
    (half the calls of a link and an unlink, which is what it does elsewhere)."""
    renameat2 = getattr(libc(), "renameat2", None)
    if renameat2 is not None:
        if renameat2(AT_FDCWD, os.fsencode(tmp), AT_FDCWD, os.fsencode(path), RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            os.unlink(tmp)
            return False
        if err not in (errno.EINVAL, errno.ENOSYS):  # not that this filesystem or kernel lacks it
            raise OSError(err, os.strerror(err), path)
    try:
        os.link(tmp, path)
        made = True
    except FileExistsError:
        made = False
    os.unlink(tmp)
    return made


def syncfs(path: str) -> None:
    """Flush everything written on the filesystem holding `path` (one journal commit on ext4 instead
    of one fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc().syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)
