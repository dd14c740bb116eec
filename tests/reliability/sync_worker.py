"""A pushing process for the sync reliability suite, killed by the tests (SIGKILL or a crash point).

    sync_worker.py VOLUME_ID CACHE_DIR [ROUNDS]

Each round: acquire the lease (waiting), pull, rewrite the tree as the next generation of
tests/reliability/generations.py, push, release. It prints "ready N" before pushing generation N,
"acknowledged N" as soon as the commit of N returned, "released N" after the release.
VOLUMES_CRASH_AT and VOLUMES_STORAGE_FAULT work as everywhere; PUSH_TTL sets the lease TTL.
"""
import os
import sys

import django

django.setup()

from tests.reliability import generations  # noqa: E402
from volumes.engine import leases, sync  # noqa: E402
from volumes.engine.cache import WorkerCache  # noqa: E402
from volumes.engine.remote import DirectRemote  # noqa: E402


class AcknowledgingRemote(DirectRemote):
    def commit_many(self, *args, **kwargs):
        results = super().commit_many(*args, **kwargs)
        for generation, _ in results:
            print(f"acknowledged {generation}", flush=True)
        return results


def main(volume_id: int, cache_dir: str, rounds: int) -> None:
    remote = AcknowledgingRemote()
    for _ in range(rounds):
        lease = leases.acquire(volume_id, f"sync worker {os.getpid()}", ttl=float(os.environ.get("PUSH_TTL", "30")),
                               wait=120)
        cached = WorkerCache(cache_dir, 10**12).volume(lease.workspace_id, lease.volume_name)
        base, _ = sync.pull(remote, lease, cached)
        generations.write(cached.tree, lease.generation + 1)
        print(f"ready {lease.generation + 1}", flush=True)
        sync.push(remote, lease, cached, base)
        leases.release(lease)
        print(f"released {lease.generation + 1}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
