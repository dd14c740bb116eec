"""A pushing process for crash tests: checks out a volume, rewrites it, pushes. Killed by the test."""
import os
import sys

import django

django.setup()

from volumes.engine import leases, sync  # noqa: E402
from volumes.engine.cache import WorkerCache  # noqa: E402
from volumes.engine.remote import DirectRemote  # noqa: E402


def main(volume_id: int, cache_dir: str, files: int) -> None:
    remote = DirectRemote()
    lease = leases.acquire(volume_id, f"pusher {os.getpid()}", ttl=float(os.environ.get("PUSH_TTL", "2")))
    cached = WorkerCache(cache_dir, 10**12).volume(lease.workspace_id, lease.volume_name)
    base, _ = sync.pull(remote, lease, cached)
    tree = cached.tree
    for i in range(files):
        (tree / f"new-{i}.bin").write_bytes(os.urandom(20_000) + b"generation 2")
    (tree / "shared.txt").write_text("written by generation 2")
    (tree / "gone.txt").unlink()
    print("ready", flush=True)
    sync.push(remote, lease, cached, base)
    leases.release(lease)
    print("committed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
