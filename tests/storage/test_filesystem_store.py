"""What only a filesystem store does: answer many lookups with one folder listing, write blobs in a batch that
shares one flush (create-only), and copy a file still exactly as
it was hashed without hashing it again."""
import hashlib
import os

import pytest

from volumes.exceptions import IntegrityError
from volumes.storage import filesystem
from volumes.storage.filesystem import FileSystemStore


@pytest.fixture
def store(tmp_path):
    return FileSystemStore(str(tmp_path / "root"), label="local")


def _keys(n):
    return [f"v/blobs/{i:04d}" for i in range(n)]


def test_many_lookups_in_one_folder_answer_as_a_stat_of_each_would(store, monkeypatch):
    keys = _keys(300)
    for key in keys[::3]:
        store.put_bytes(key, b"x")
    os.makedirs(store.local_file(keys[1]))  # a folder under a blob's name is no blob
    expected = [key for i, key in enumerate(keys) if i % 3]
    listings = []
    real = filesystem._listings
    monkeypatch.setattr(filesystem, "_listings", lambda paths: listings.append(real(paths)) or listings[-1])
    assert store.absent(keys) == expected
    assert listings[-1], "the folder was not listed"
    assert store.absent(keys[:10]) == [key for i, key in enumerate(keys[:10]) if i % 3]
    assert not listings[-1], "ten lookups listed the folder"


def test_a_folder_much_bigger_than_the_ask_is_not_listed(store, monkeypatch):
    keys = _keys(2000)
    for key in keys:
        store.put_bytes(key, b"x")
    asked = keys[:70] + ["v/blobs/nothing-here"]
    scanned = []
    real_scandir = os.scandir
    monkeypatch.setattr(filesystem.os, "scandir", lambda path: scanned.append(path) or real_scandir(path))
    assert store.absent(asked) == ["v/blobs/nothing-here"]
    assert not scanned


def test_a_missing_folder_means_every_key_is_absent(store):
    keys = _keys(100)
    assert store.absent(keys) == keys


class _Libc:
    """This process's libc, but its renameat2 refuses RENAME_NOREPLACE (EINVAL, as a filesystem that lacks it does)
    or is not there at all (an older C library)."""

    def __init__(self, real, renameat2: bool):
        self.real, self.has_renameat2 = real, renameat2

    def __getattr__(self, name):
        if name == "renameat2":
            if not self.has_renameat2:
                raise AttributeError(name)
            return self.refuse
        return getattr(self.real, name)

    @staticmethod
    def refuse(*args):
        import ctypes
        import errno

        ctypes.set_errno(errno.EINVAL)
        return -1


@pytest.mark.parametrize("system", ["renameat2", "a filesystem without RENAME_NOREPLACE", "no renameat2 at all"])
def test_a_batch_names_new_blobs_and_keeps_an_object_already_stored(store, tmp_path, monkeypatch, system):
    """A finished blob takes its name with one rename that never replaces (renameat2 RENAME_NOREPLACE), or a link
    and an unlink where the system cannot: either way an object already stored keeps its bytes, and no temp file
    is left. Single create-only writes take the same way."""
    from volumes.storage import localfiles

    if system != "renameat2":
        monkeypatch.setattr(localfiles, "_libc", _Libc(localfiles.libc(), renameat2=system.startswith("a file")))
    store.put_bytes("v/blobs/kept", b"stored first")
    source = tmp_path / "new.bin"
    source.write_bytes(b"written by the batch")
    digest = hashlib.sha256(b"written by the batch").hexdigest()
    with store.write_batch() as batch:
        batch.put_file("v/blobs/kept", source, sha256=digest)
        batch.put_file("v/blobs/new", source, sha256=digest)
        assert not store.exists("v/blobs/new"), "a blob was visible before the batch was flushed"
    assert store.put_bytes("v/blobs/new", b"other", create_only=True) is False
    assert store.put_bytes("v/blobs/third", b"third", create_only=True) is True
    assert store.get_bytes("v/blobs/kept") == b"stored first"
    assert store.get_bytes("v/blobs/new") == b"written by the batch"
    assert sorted(os.listdir(os.path.dirname(store.local_file("v/blobs/new")))) == ["kept", "new", "third"]


def test_a_file_copied_as_hashed_is_stored_and_a_changed_one_is_refused(store, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(b"a" * 5000)
    digest = hashlib.sha256(b"a" * 5000).hexdigest()
    st = os.stat(source)
    as_hashed = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    with store.write_batch() as batch:
        batch.put_file("v/blobs/same", source, sha256=digest, hashed_as=as_hashed)
    assert store.get_bytes("v/blobs/same") == b"a" * 5000
    with open(source, "r+b") as fh:  # same size, other bytes: its ctime moves
        fh.write(b"b")
    with pytest.raises(IntegrityError, match="changed while it was uploaded"):
        with store.write_batch() as batch:
            batch.put_file("v/blobs/changed", source, sha256=digest, hashed_as=as_hashed)
    assert not store.exists("v/blobs/changed")
    assert [n for n in os.listdir(os.path.dirname(store.local_file("v/blobs/same")))] == ["same"]
