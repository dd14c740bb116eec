"""A job's read-write volumes commit all together or not at all."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from volumes.engine import sync
from volumes.engine.leases import Lease
from volumes.exceptions import Conflict, LeaseLost, LimitExceeded, StorageUnavailable
from volumes.models import Volume, VolumeCommit
from volumes.services.volumes import volume_create

from .helpers import checkout

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two(workspace, cast, cache_root):
    """Two checked-out volumes, each with a changed file."""
    out = []
    for name in ("alpha", "beta"):
        volume = volume_create(workspace, name, owner=cast["owner"])
        remote, lease, cached, base, _ = checkout(volume, cache_root)
        (cached.tree / f"{name}.txt").write_text(name * 100)
        out.append((remote, lease, cached, base))
    yield out
    for remote, lease, *_ in out:
        remote.release(lease)


def _generations():
    return dict(Volume.objects.values_list("name", "generation"))


def _commit_both(two, **limits):
    remote = two[0][0]
    prepared = [sync.push_prepare(r, lease, cached, base, max_volume_size=limits.get(lease.volume_name))
                for r, lease, cached, base in two]
    return sync.commit_all(remote, [p for p, _ in prepared])


def test_both_volumes_commit_together(two):
    generations = _commit_both(two)
    assert generations == [1, 1]
    assert _generations() == {"alpha": 1, "beta": 1}
    assert VolumeCommit.objects.count() == 2


def test_a_size_limit_on_the_second_volume_commits_neither(two):
    with pytest.raises(LimitExceeded):
        _commit_both(two, beta=10)
    assert _generations() == {"alpha": 0, "beta": 0}


def test_a_lost_lease_on_the_second_volume_commits_neither(two):
    beta = two[1][1]
    Volume.objects.filter(pk=beta.volume_id).update(lease_token=beta.token + 1)  # taken over
    with pytest.raises(LeaseLost):
        _commit_both(two)
    assert _generations() == {"alpha": 0, "beta": 0}
    assert not VolumeCommit.objects.exists()


def test_a_conflict_on_the_second_volume_commits_neither(two):
    beta = two[1][1]
    Volume.objects.filter(pk=beta.volume_id).update(generation=5)  # moved by someone (e.g. a restore)
    with pytest.raises(Conflict):
        _commit_both(two)
    assert Volume.objects.get(name="alpha").generation == 0
    assert not VolumeCommit.objects.exists()


def test_a_storage_error_on_the_second_volume_commits_neither(two, monkeypatch):
    """The second volume's blobs never become durable: its store fails the flush that ends its uploads."""
    remote = two[0][0]
    real = type(remote).upload_batch

    @contextmanager
    def flaky(self, lease: Lease):
        with real(self, lease) as batch:
            yield batch
            if lease.volume_name == "beta":
                raise StorageUnavailable("test storage", "the flush failed")

    monkeypatch.setattr(type(remote), "upload_batch", flaky)
    with pytest.raises(StorageUnavailable):
        _commit_both(two)
    assert _generations() == {"alpha": 0, "beta": 0}


def test_a_failure_inside_the_commit_transaction_moves_no_pointer(two, monkeypatch):
    """Even when the second pointer update itself fails, the first one is rolled back."""
    from volumes.engine import commits

    real, calls = commits._move_pointer, []

    def second_fails(request, user_id):
        calls.append(request.lease.volume_name)
        if len(calls) == 2:
            raise LeaseLost("injected after the first pointer moved")
        return real(request, user_id)

    monkeypatch.setattr(commits, "_move_pointer", second_fails)
    with pytest.raises(LeaseLost):
        _commit_both(two)
    assert calls == ["alpha", "beta"]
    assert _generations() == {"alpha": 0, "beta": 0}
    assert not VolumeCommit.objects.exists()
