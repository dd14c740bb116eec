"""Benchmark the sync engine against `cp -a` and `rclone` on the same data, and print a table.

    python manage.py bench [--datasets S,M] [--backends filesystem,s3] [--runs 3] [--jobs]

Datasets are generated deterministically under bench-data/ (S: 1,000 files / 100 MB of mixed
sizes; M: 10,000 small files / 200 MB in nested folders with symlinks). Figures are medians.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from volumes.engine import leases, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.models import Volume, Workspace


def generate(root: Path, name: str) -> Path:
    """Create dataset `name` under root once (a marker file says it is complete)."""
    target = root / name
    if (target / ".complete").exists():
        return target / "tree"
    shutil.rmtree(target, ignore_errors=True)
    tree = target / "tree"
    tree.mkdir(parents=True)
    rng = random.Random(name)
    if name == "S":  # 1,000 files, 100 MB: a few large, some medium, many small
        sizes = [5_000_000] * 10 + [400_000] * 90 + [15_500] * 900
        paths = [f"d{i % 10}/file-{i:04d}.bin" for i in range(len(sizes))]
    else:  # M: 10,000 files, 200 MB, three levels of folders
        sizes = [20_000] * 10_000
        paths = [f"a{i // 1000}/b{(i // 100) % 10}/file-{i:05d}.bin" for i in range(10_000)]
    for path, size in zip(paths, sizes):
        full = tree / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(rng.randbytes(size))
    if name == "M":
        for i in range(20):
            os.symlink(f"../b0/file-{i:05d}.bin", tree / "a0" / f"link-{i}")
    (target / ".complete").write_text("ok")
    return tree


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Command(BaseCommand):
    help = "Benchmark pull/push against cp -a and rclone; prints a table of medians and ratios."

    def add_arguments(self, parser):
        parser.add_argument("--datasets", default="S,M")
        parser.add_argument("--backends", default="filesystem,s3")
        parser.add_argument("--runs", type=int, default=3)
        parser.add_argument("--data-dir", default=str(Path(settings.BASE_DIR) / "bench-data"))
        parser.add_argument("--jobs", action="store_true", help="also measure job start/end overhead")

    def handle(self, *args, **opts):
        self.runs = opts["runs"]
        data_dir = Path(opts["data_dir"])
        self.scratch = Path(tempfile.mkdtemp(prefix="volumes-bench-"))
        self.rows: list[tuple[str, ...]] = []
        self.servers: list[subprocess.Popen] = []
        self.rclone = shutil.which("rclone")
        try:
            for name in opts["datasets"].split(","):
                tree = generate(data_dir, name)
                for backend in opts["backends"].split(","):
                    self.bench_backend(name, tree, backend)
                if opts["jobs"] and name == "M":
                    self.bench_jobs(tree)
        finally:
            for proc in self.servers:
                proc.terminate()
                proc.wait()
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.print_table()

    # --- storage backends -------------------------------------------------------------------
    def storage_url(self, backend: str) -> tuple[str, dict]:
        if backend == "filesystem":
            root = self.scratch / f"fs-{uuid.uuid4().hex[:6]}"
            return f"file://{root}", {"type": "local", "path": str(root)}
        port = free_port()
        moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.servers.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench")
        url = f"s3://bench/v?endpoint_url={endpoint}&region=us-east-1&access_key=bench&secret_key=bench"
        return url, {"type": "s3", "endpoint": endpoint}

    def new_volume(self, url: str) -> Volume:
        from volumes.services.volumes import volume_create
        from volumes.services.workspaces import workspace_ensure

        ws = workspace_ensure(f"bench-{uuid.uuid4().hex[:8]}", storage_url=url)
        with self.settings_override():
            return volume_create(ws, "bench")

    def settings_override(self):
        from django.test import override_settings

        return override_settings(VOLUMES={**settings.VOLUMES, "MAX_VOLUMES_PER_WORKSPACE": 10**6,
                                          "MAX_FILE_SIZE": 10**12})

    def checkout(self, volume: Volume, cache_dir: Path):
        remote = DirectRemote()
        # A long TTL instead of a renewer thread: a cold push of a big dataset can outlast 60 s.
        lease = leases.acquire(volume.pk, "bench", ttl=3600)
        cached = WorkerCache(cache_dir, 10**13).volume(volume.workspace_id, volume.name)
        return remote, lease, cached

    def bench_backend(self, name: str, tree: Path, backend: str) -> None:
        url, rclone_remote = self.storage_url(backend)
        files = sum(1 for _ in tree.rglob("*"))
        cold_push, cold_pull, noop, change, add, delete, cp = [], [], [], [], [], [], []
        with self.settings_override():
            for run in range(self.runs):
                volume = self.new_volume(url)
                cache = self.scratch / f"cache-{uuid.uuid4().hex[:6]}"
                remote, lease, cached = self.checkout(volume, cache)
                base, _ = sync.pull(remote, lease, cached)
                cached.tree.rmdir()
                shutil.copytree(tree, cached.tree, symlinks=True)
                cold_push.append(timed(lambda: sync.push(remote, lease, cached, base)))
                remote.release(lease)

                fresh = self.scratch / f"cache-{uuid.uuid4().hex[:6]}"
                remote, lease, cached2 = self.checkout(volume, fresh)
                cold_pull.append(timed(lambda: sync.pull(remote, lease, cached2)))
                remote.release(lease)
                dest = self.scratch / f"cp-{uuid.uuid4().hex[:6]}"
                cp.append(timed(lambda: subprocess.run(["cp", "-a", str(tree), str(dest)], check=True)))
                shutil.rmtree(dest)

                def cycle(mutate=None):
                    remote, lease, c = self.checkout(volume, fresh)
                    try:
                        base, _ = sync.pull(remote, lease, c)
                        if mutate:
                            mutate(c.tree)
                        sync.push(remote, lease, c, base)
                    finally:
                        remote.release(lease)

                noop.append(timed(cycle))
                sample = sorted(p for p in cached2.tree.rglob("*.bin") if not p.is_symlink())
                pick = sample[run::100][: max(1, len(sample) // 100)]
                change.append(timed(lambda: cycle(lambda t: [p.write_bytes(os.urandom(p.stat().st_size)) for p in
                                                             [t / q.relative_to(cached2.tree) for q in pick]])))
                add.append(timed(lambda: cycle(lambda t: [(t / f"added-{run}-{i}.bin").write_bytes(os.urandom(20_000))
                                                          for i in range(len(pick))])))
                delete.append(timed(lambda: cycle(lambda t: [(t / q.relative_to(cached2.tree)).unlink() for q in pick])))
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(fresh, ignore_errors=True)
        ref = f"{name}/{backend}"
        self.rows.append((ref, "cold push", f"{median(cold_push):.2f}s", ""))
        self.rows.append((ref, "cold pull", f"{median(cold_pull):.2f}s",
                          f"cp -a {median(cp):.2f}s -> {median(cold_pull) / median(cp):.2f}x"))
        self.rows.append((ref, "no-change pull+push", f"{median(noop):.3f}s", ""))
        self.rows.append((ref, "push after 1% changed", f"{median(change):.3f}s", ""))
        self.rows.append((ref, "push after 1% added", f"{median(add):.3f}s", ""))
        self.rows.append((ref, "push after 1% deleted", f"{median(delete):.3f}s", ""))
        if self.rclone:
            self.bench_rclone(name, tree, backend, rclone_remote, median(noop), median(cold_push), files)

    def bench_rclone(self, name, tree, backend, remote_cfg, noop, cold_push, files) -> None:
        env = dict(os.environ)
        if remote_cfg["type"] == "local":
            target = str(self.scratch / f"rclone-{uuid.uuid4().hex[:6]}")
        else:
            env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                       RCLONE_CONFIG_BENCH_ENDPOINT=remote_cfg["endpoint"], RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="bench",
                       RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="bench", RCLONE_CONFIG_BENCH_REGION="us-east-1")
            target = f"bench:bench/rclone-{uuid.uuid4().hex[:6]}"
            env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 refuses a CA bundle with its own HTTP transport
        threads = str(settings.VOLUMES["TRANSFER_THREADS"])
        base = ["rclone", "sync", "--links", "--transfers", threads, "--checkers", threads, str(tree), target]
        first = [timed(lambda: subprocess.run(base, env=env, check=True, capture_output=True))]
        checks = [timed(lambda: subprocess.run(base + ["--checksum"], env=env, check=True, capture_output=True))
                  for _ in range(self.runs)]
        ref = f"{name}/{backend}"
        self.rows.append((ref, "rclone sync (cold)", f"{first[0]:.2f}s",
                          f"ours {cold_push:.2f}s -> {first[0] / cold_push:.2f}x faster" if cold_push else ""))
        self.rows.append((ref, "rclone sync --checksum (no change)", f"{median(checks):.3f}s",
                          f"ours {noop:.3f}s -> {median(checks) / noop:.1f}x faster"))

    # --- job overhead -------------------------------------------------------------------------
    def bench_jobs(self, tree: Path) -> None:
        from volumes.models import Job
        from volumes.services.jobs import job_run, job_submit
        from volumes.services.workspaces import user_ensure, workspace_ensure

        url, _ = self.storage_url("filesystem")
        cache = self.scratch / "job-cache"
        ws = workspace_ensure(f"bench-{uuid.uuid4().hex[:8]}", admins=["bench"], storage_url=url)
        user = user_ensure("bench")
        with self.settings_override(), self.cache_override(cache):
            volume = Volume.objects.create(workspace=ws, name="big", owner=user, storage=ws.volume_storage)
            remote, lease, cached = self.checkout(volume, cache)
            base, _ = sync.pull(remote, lease, cached)
            cached.tree.rmdir()
            shutil.copytree(tree, cached.tree, symlinks=True)
            sync.push(remote, lease, cached, base)
            remote.release(lease)
            results = {}
            for label, script in [("no volume", "def main():\n    return 1\n"),
                                  ("volume M (10,000 files, cached)", "# volume: big data\ndef main():\n    return 1\n")]:
                starts, ends = [], []
                for _ in range(self.runs + 1):
                    job = job_submit(ws, user, "python", script, enqueue=False)
                    job = job_run(job.pk)
                    assert job.status == Job.Status.SUCCESS, job.error
                    starts.append((job.script_started_at - job.created_at).total_seconds())
                    ends.append((job.finished_at - job.script_finished_at).total_seconds())
                results[label] = (median(starts[1:]), median(ends[1:]))
                self.rows.append(("jobs", f"start overhead, {label}", f"{results[label][0]:.3f}s", ""))
                self.rows.append(("jobs", f"end overhead, {label}", f"{results[label][1]:.3f}s", ""))
            (s0, e0), (s1, e1) = results.values()
            self.rows.append(("jobs", "start with volume vs without", f"+{s1 - s0:.3f}s", f"{s1 / s0:.2f}x"))
            self.rows.append(("jobs", "end with volume vs without", f"+{e1 - e0:.3f}s", f"{e1 / e0:.2f}x"))

    def cache_override(self, cache: Path):
        from django.test import override_settings

        return override_settings(VOLUMES={**settings.VOLUMES, "CACHE_DIR": cache, "MAX_VOLUMES_PER_WORKSPACE": 10**6,
                                          "MAX_FILE_SIZE": 10**12})

    def print_table(self) -> None:
        widths = [max(len(r[i]) for r in self.rows + [("data", "measure", "median", "reference")]) for i in range(4)]
        header = ("data", "measure", "median", "reference")
        for row in [header] + self.rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
