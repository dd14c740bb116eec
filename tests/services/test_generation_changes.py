"""What one generation changed against its parent (the dashboard's generation page)."""
from __future__ import annotations

import io

import pytest

from volumes import selectors
from volumes.services import files
from volumes.services.file_history import generation_changes
from volumes.services.volumes import volume_prune_history

pytestmark = pytest.mark.django_db(transaction=True)


def paths(entries) -> list[str]:
    return [e.path for e in entries]


def test_a_generation_lists_what_it_added_changed_and_deleted_by_path(volume, cast):
    files.file_put_many(volume, [("b.txt", io.BytesIO(b"b")), ("a.txt", io.BytesIO(b"a")),
                                 ("old.txt", io.BytesIO(b"o"))], user=cast["owner"])
    files.file_put_many(volume, [("c.txt", io.BytesIO(b"c")), ("a.txt", io.BytesIO(b"A"))], user=cast["owner"])
    generation = files.file_delete(volume, "old.txt", user=cast["owner"])
    first = generation_changes(volume, selectors.volume_commit(volume, generation - 2))
    assert (paths(first.added), first.changed, first.deleted, first.parent_missing) == (
        ["a.txt", "b.txt", "old.txt"], [], [], False)
    second = generation_changes(volume, selectors.volume_commit(volume, generation - 1))
    assert (paths(second.added), paths(second.changed), second.deleted) == (["c.txt"], ["a.txt"], [])
    third = generation_changes(volume, selectors.volume_commit(volume, generation))
    assert (third.added, third.changed, paths(third.deleted)) == ([], [], ["old.txt"])


def test_a_generation_whose_parent_was_pruned_shows_everything_as_added(volume, cast):
    files.file_put_many(volume, [("a.txt", io.BytesIO(b"a"))], user=cast["owner"])
    generation = files.file_put_many(volume, [("b.txt", io.BytesIO(b"b"))], user=cast["owner"])
    volume_prune_history(volume, keep=1, user=cast["owner"])
    volume.refresh_from_db()
    changes = generation_changes(volume, selectors.volume_commit(volume, generation))
    assert changes.parent_missing and paths(changes.added) == ["a.txt", "b.txt"]
