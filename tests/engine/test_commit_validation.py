"""A commit refuses a manifest a reader would refuse, whoever built it: the checks at commit look at what
changed from the base generation, and must still catch every way a change can break the whole."""
from __future__ import annotations

import pytest

from volumes.engine import sync
from volumes.engine.commits import ChangeCounts
from volumes.engine.manifest import DIR, Entry, Manifest
from volumes.exceptions import IntegrityError
from volumes.models import Volume
from volumes.services.volumes import volume_create

from .helpers import checkout, commit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def held(workspace, cast, cache_root):
    """A volume at generation 1 (docs/a.txt, docs/deep/b.txt, top.txt), checked out: (remote, lease, cached, base)."""
    volume = volume_create(workspace, "checked", owner=cast["owner"])

    def fill(tree):
        (tree / "docs" / "deep").mkdir(parents=True)
        (tree / "docs" / "a.txt").write_text("a")
        (tree / "docs" / "deep" / "b.txt").write_text("b")
        (tree / "top.txt").write_text("top")

    commit(volume, cache_root, fill)
    remote, lease, cached, base, _ = checkout(volume, cache_root)
    yield remote, lease, cached, base
    remote.release(lease)


def _commit(held, change) -> list[int]:
    remote, lease, cached, base = held
    manifest = Manifest(dict(base.entries), base.generation)
    change(manifest.entries, base.entries)
    prepared = sync.PreparedCommit(lease, cached, base, manifest, ChangeCounts.between(base, manifest),
                                   sync.SyncStats())
    return sync.commit_all(remote, [prepared])


def _generation(held) -> int:
    return Volume.objects.get(pk=held[1].volume_id).generation


BROKEN = {
    "an added path with ..": lambda new, base: new.update({"docs/../x": base["top.txt"]._replace(path="docs/../x")}),
    "an added file without its folder": lambda new, base: new.update(
        {"nowhere/x": base["top.txt"]._replace(path="nowhere/x")}),
    "a folder deleted under its files": lambda new, base: new.pop("docs/deep"),
    "a folder turned into a file under its files": lambda new, base: new.update(
        {"docs": base["top.txt"]._replace(path="docs")}),
    "a folder deleted two levels up": lambda new, base: new.pop("docs"),
    "an entry filed under another path": lambda new, base: new.update({"top.txt": base["docs/a.txt"]}),
    "a changed file with a bad hash": lambda new, base: new.update(
        {"top.txt": base["top.txt"]._replace(hash="not-a-hash")}),
    "a changed entry of an unknown type": lambda new, base: new.update(
        {"top.txt": base["top.txt"]._replace(type="fifo")}),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_change_that_breaks_the_manifest_is_refused_and_nothing_is_committed(held, case):
    with pytest.raises(IntegrityError):
        _commit(held, BROKEN[case])
    assert _generation(held) == 1


def test_a_sound_change_beside_untouched_entries_commits(held):
    def change(new, base):
        del new["docs/deep/b.txt"], new["docs/deep"]
        new["docs/new"] = Entry("docs/new", DIR, mode=0o755)
        new["docs/new/c.txt"] = base["top.txt"]._replace(path="docs/new/c.txt")
        new["top.txt"] = base["top.txt"]._replace(mode=0o600)

    assert _commit(held, change) == [2]
    assert _generation(held) == 2

