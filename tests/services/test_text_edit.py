"""Saving a text file edited in the dashboard: refused, never overwriting, when someone else changed the file
after the editor opened it, also when their change lands while the save is under way."""
from __future__ import annotations

import hashlib
import io

import pytest

from volumes.exceptions import Conflict, NotFound
from volumes.models import Volume
from volumes.services import bulk, files

pytestmark = pytest.mark.django_db(transaction=True)


def content(volume) -> bytes:
    volume = Volume.objects.get(pk=volume.pk)
    return b"".join(files.open_file(volume, files.entry_at(volume, "notes.txt")))


@pytest.fixture
def opened(volume, cast):
    """notes.txt as the editor opened it: its hash goes back with the save."""
    files.file_put(volume, "notes.txt", io.BytesIO(b"first"), user=cast["owner"])
    return hashlib.sha256(b"first").hexdigest()


def test_a_save_replaces_the_file_it_opened(volume, cast, opened):
    bulk.text_save(Volume.objects.get(pk=volume.pk), "notes.txt", "second", opened, user=cast["owner"])
    assert content(volume) == b"second"


def test_a_save_after_another_change_is_refused(volume, cast, opened):
    files.file_put(volume, "notes.txt", io.BytesIO(b"theirs"), user=cast["admin"])
    with pytest.raises(Conflict, match="changed since you opened it"):
        bulk.text_save(Volume.objects.get(pk=volume.pk), "notes.txt", "mine", opened, user=cast["owner"])
    assert content(volume) == b"theirs"


def test_a_change_landing_while_the_save_is_under_way_is_not_overwritten(volume, cast, opened, monkeypatch):
    """The other writer commits after the save compared the hash but before it took the lease."""
    real, armed = files._spool, [True]

    def spool(*args):
        if armed.pop() if armed else False:
            files.file_put(volume, "notes.txt", io.BytesIO(b"theirs"), user=cast["admin"])
        return real(*args)

    monkeypatch.setattr(files, "_spool", spool)
    with pytest.raises(Conflict, match="changed since you opened it"):
        bulk.text_save(Volume.objects.get(pk=volume.pk), "notes.txt", "mine", opened, user=cast["owner"])
    assert content(volume) == b"theirs"


def test_a_save_of_a_file_deleted_meanwhile_is_refused(volume, cast, opened):
    files.file_delete(volume, "notes.txt", user=cast["admin"])
    with pytest.raises(NotFound, match="no longer a file"):
        bulk.text_save(Volume.objects.get(pk=volume.pk), "notes.txt", "mine", opened, user=cast["owner"])
