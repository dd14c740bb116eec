import subprocess
import sys
import time

import pytest

from volumes.engine import leases
from volumes.engine.commits import ChangeCounts, commit_generation
from volumes.engine.manifest import Manifest
from volumes.exceptions import LeaseLost, LeaseTimeout
from volumes.models import Volume

from .helpers import ROOT, run_python, worker_env


def test_each_acquire_gives_a_strictly_larger_token(volume):
    tokens = []
    for _ in range(3):
        lease = leases.acquire(volume.pk, "w1")
        tokens.append(lease.token)
        assert leases.release(lease)
    assert tokens == sorted(set(tokens)) and len(tokens) == 3


def test_it_refuses_a_second_holder_while_the_lease_is_live(volume):
    first = leases.acquire(volume.pk, "w1")
    assert leases.try_acquire(volume.pk, "w2") is None
    holder = leases.current_holder(volume.pk)
    assert holder.holder == "w1"
    leases.release(first)
    assert leases.try_acquire(volume.pk, "w2") is not None


def test_the_next_waiter_proceeds_after_a_crashed_holder_expires(volume):
    crashed = leases.acquire(volume.pk, "crashed", ttl=0.3)
    started = time.monotonic()
    nxt = leases.acquire(volume.pk, "next", wait=5)
    assert 0.2 < time.monotonic() - started < 3
    assert nxt.token > crashed.token


def test_a_stale_token_cannot_renew_commit_or_release(volume):
    stale = leases.acquire(volume.pk, "old", ttl=0.2)
    time.sleep(0.3)
    fresh = leases.acquire(volume.pk, "new", wait=0)
    with pytest.raises(LeaseLost):
        leases.renew(stale)
    with pytest.raises(LeaseLost):
        commit_generation(stale, 0, "volumes/x/m.json", Manifest(), ChangeCounts())
    assert leases.release(stale) is False
    volume.refresh_from_db()
    assert volume.generation == 0 and volume.lease_holder == "new" and volume.lease_token == fresh.token


def test_an_expired_lease_cannot_be_renewed_even_if_nobody_took_it(volume):
    lease = leases.acquire(volume.pk, "slow", ttl=0.2)
    time.sleep(0.3)
    with pytest.raises(LeaseLost):
        leases.renew(lease)


def test_a_waiting_acquire_says_who_holds_the_volume_and_gives_up_clearly(volume):
    leases.acquire(volume.pk, "worker-a job 7")
    seen = []
    with pytest.raises(LeaseTimeout) as err:
        leases.acquire(volume.pk, "worker-b", wait=0.3, on_wait=seen.append)
    assert seen and seen[0].holder == "worker-a job 7"
    assert "worker-a job 7" in str(err.value) and "training-data" in str(err.value)


def test_a_commit_moves_the_generation_once_per_parent(volume):
    lease = leases.acquire(volume.pk, "w")
    assert commit_generation(lease, 0, "k1", Manifest(), ChangeCounts()) == 1
    with pytest.raises(Exception):
        commit_generation(lease, 0, "k2", Manifest(), ChangeCounts())
    volume.refresh_from_db()
    assert (volume.generation, volume.manifest_key) == (1, "k1")


INCREMENT = """
import json, sys
from volumes.engine import leases
from volumes.models import Volume
from volumes.engine.commits import commit_generation, ChangeCounts
from volumes.engine.manifest import Manifest
vid, rounds, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
log = []
for _ in range(rounds):
    lease = leases.acquire(vid, name, wait=60)
    # Read-modify-write of a counter kept in the manifest key: lost updates would show.
    count = int(lease.manifest_key or 0)
    gen = commit_generation(lease, lease.generation, str(count + 1), Manifest(), ChangeCounts())
    log.append(lease.token)
    leases.release(lease)
print(json.dumps(log))
"""


@pytest.mark.django_db(transaction=True)
def test_processes_contending_for_one_volume_never_overlap(volume):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import django; django.setup()\n" + INCREMENT, str(volume.pk), "25", f"p{i}"],
            env=worker_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(4)
    ]
    tokens = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        tokens += __import__("json").loads(out)
    volume = Volume.objects.get(pk=volume.pk)
    assert volume.manifest_key == "100" and volume.generation == 100
    assert len(set(tokens)) == 100
    commits = list(volume.commits.order_by("generation").values_list("lease_token", flat=True))
    assert commits == sorted(commits) and len(set(commits)) == 100
