"""A lease-holding process for the lease reliability suite, started (and paused or killed) by the tests.

    lease_worker.py cycles VOLUME_ID CACHE_DIR N   N increment cycles: acquire (waiting), pull, read
                                                  count.txt, +1, push, release; prints the tokens as JSON
    lease_worker.py stale VOLUME_ID CACHE_DIR      acquire, pull, change count.txt, print "ready", then wait
                                                  for a line on stdin (the test pauses us meanwhile) and try
                                                  to renew, push and release; prints what each answered
    lease_worker.py hold VOLUME_ID CACHE_DIR       print "waiting", acquire, print "held <monotonic time>",
                                                  then renew and commit increments until killed

The lease TTL comes from VOLUMES_LEASE_TTL; VOLUMES_HISTORY_FILE records every operation.
"""
import dataclasses
import json
import os
import random
import sys
import time

import django

django.setup()

from volumes.engine import leases, sync  # noqa: E402
from volumes.engine.cache import WorkerCache  # noqa: E402
from volumes.engine.remote import DirectRemote  # noqa: E402
from volumes.exceptions import VolumesError  # noqa: E402
from volumes.models import Volume  # noqa: E402

COUNTER = "count.txt"


def increment(remote, lease, cached) -> None:
    """Pull the leased generation, add one to the counter, push it as the next generation."""
    base, _ = sync.pull(remote, lease, cached)
    path = cached.tree / COUNTER
    count = int(path.read_text()) if path.exists() else 0
    path.write_text(str(count + 1))
    sync.push(remote, lease, cached, base)


def cycles(volume_id: int, cache_dir: str, rounds: int) -> None:
    remote, tokens = DirectRemote(), []
    holder = f"cycler {os.getpid()}"
    workspace_id, name = Volume.objects.values_list("workspace_id", "name").get(pk=volume_id)
    cached = WorkerCache(cache_dir, 10**12).volume(workspace_id, name)
    for _ in range(rounds):
        lease = leases.acquire(volume_id, holder, wait=120)
        try:
            increment(remote, lease, cached)
        finally:
            remote.release(lease)
        tokens.append(lease.token)
        time.sleep(random.uniform(0, 0.02))  # let a waiting process in now and then
    print(json.dumps(tokens), flush=True)


def stale(volume_id: int, cache_dir: str) -> None:
    remote = DirectRemote()
    lease = leases.acquire(volume_id, f"paused {os.getpid()}", wait=30)
    cached = WorkerCache(cache_dir, 10**12).volume(lease.workspace_id, lease.volume_name)
    base, _ = sync.pull(remote, lease, cached)
    (cached.tree / COUNTER).write_text("written by the paused holder")
    print("ready", flush=True)
    sys.stdin.readline()
    answers = {}
    for name, attempt in [
        ("renew", lambda: remote.renew(lease)),
        ("push", lambda: sync.push(remote, lease, cached, base)),
        ("release", lambda: remote.release(lease)),
    ]:
        try:
            answers[name] = repr(attempt())
        except VolumesError as exc:
            answers[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(answers), flush=True)


def hold(volume_id: int, cache_dir: str) -> None:
    remote = DirectRemote()
    print("waiting", flush=True)
    lease = leases.acquire(volume_id, f"holder {os.getpid()}", wait=120)
    print(f"held {time.monotonic()}", flush=True)
    cached = WorkerCache(cache_dir, 10**12).volume(lease.workspace_id, lease.volume_name)
    while True:  # until the test kills us, at any point of this loop
        remote.renew(lease)
        increment(remote, lease, cached)
        row = Volume.objects.values("generation", "manifest_key").get(pk=volume_id)
        lease = dataclasses.replace(lease, **row)  # still ours: the next commit builds on this one


if __name__ == "__main__":
    mode, volume, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "cycles":
        cycles(volume, cache, int(sys.argv[4]))
    elif mode == "stale":
        stale(volume, cache)
    else:
        hold(volume, cache)
