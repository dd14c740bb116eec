"""Benchmark the sync engine against `cp -a` and `rclone` on the same data, and print a table.

    python manage.py bench [--datasets S,M] [--backends filesystem,s3,azure,gcs] [--runs 3] [--jobs] [--big]

Datasets are generated deterministically under bench-data/ (S: 1,000 files / 100 MB of mixed
sizes; M: 10,000 small files / 200 MB in nested folders with symlinks; L: 100,000 files of 2 KB,
for --big). Figures are medians; every reference (`cp -a`, `rsync -a`, `rclone`) is measured in
the same run on the same data, next to the measure it is compared with, and a ratio is the median of the
runs' own ratios (so a machine that slows down between runs moves both sides of a pair). "By another worker" is a pull of a
change a second cache committed, as a worker does after another one used the volume. s3, azure and gcs start moto_server,
Azurite and gcp-storage-emulator on 127.0.0.1 (scripts/install_tools.sh, requirements-dev.txt); rclone is run
against the same server.

`--jobs` times the start and end of a job with a cached 10,000-file volume against a job without
volumes; `--big` does the same for the 100,000-file volume in a fresh process each, and reports
the peak memory (maximum resident set) of that process.
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
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from volumes.engine import leases, sync
from volumes.engine.cache import WorkerCache
from volumes.engine.remote import DirectRemote
from volumes.models import Volume, Workspace


# Runs a command and prints its peak resident set in KiB. The command must be forked from this small
# process: a child of the bench itself would report the bench's own peak, which Linux carries over
# into the child's maximum at exec (with fork and with vfork alike).
PEAK_RSS_OF = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the job's own output is not the figure
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
if status:
    sys.exit(f"{sys.argv[1:]} exited with {status}")
print(usage.ru_maxrss)
"""


AZURITE_ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account and key (public, in its docs)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def tool(name: str) -> str:
    """A server binary from .tools (scripts/install_tools.sh), this interpreter's bin, or PATH."""
    for folder in (Path(settings.BASE_DIR) / ".tools" / "node_modules" / ".bin", Path(sys.executable).parent):
        if os.access(folder / name, os.X_OK):
            return str(folder / name)
    return shutil.which(name) or name


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
    elif name == "L":  # 100,000 files, 200 MB, 1,000 folders of 100
        sizes = [2_000] * 100_000
        paths = [f"a{i // 10_000}/b{(i // 100) % 100}/file-{i:06d}.bin" for i in range(100_000)]
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


def ratio(label: str, reference: list[float], ours: list[float]) -> str:
    """'cp -a 0.57s; ours 2.10x': the median reference, and the median of ours / reference over the pairs
    measured in the same run (lower is better)."""
    pairs = [o / r for r, o in zip(reference, ours) if r]
    return f"{label} {median(reference):.3f}s; ours {median(pairs):.2f}x" if pairs else ""


def faster(label: str, reference: list[float], ours: list[float]) -> str:
    """ratio(), and how many times faster than the reference ours is (the median over the pairs)."""
    pairs = [r / o for r, o in zip(reference, ours) if o]
    return f"{ratio(label, reference, ours)} ({median(pairs):.1f}x faster)" if pairs else ""


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
        parser.add_argument("--big", action="store_true", help="also measure warm jobs on 100,000 files")

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
                for backend in filter(None, opts["backends"].split(",")):  # "" : jobs only
                    self.bench_backend(name, tree, backend)
                if opts["jobs"] and name == "M":
                    self.bench_jobs(tree)
            if opts["big"]:
                self.bench_big(generate(data_dir, "L"))
        finally:
            for proc in self.servers:
                proc.terminate()
                proc.wait()
            shutil.rmtree(self.scratch, ignore_errors=True)
            if self.rows:
                self.print_table()  # what was measured, also when a later part failed

    # --- storage backends -------------------------------------------------------------------
    def storage_url(self, backend: str) -> tuple[str, dict]:
        """The workspace storage URL of a fresh bucket on a server started here (stopped at the end), and how
        rclone reaches the same bucket: {"type": "local", "path": ...} or {"env": RCLONE_CONFIG_BENCH_*}."""
        if backend == "filesystem":
            root = self.scratch / f"fs-{uuid.uuid4().hex[:6]}"
            return f"file://{root}", {"type": "local", "path": str(root)}
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        if backend == "s3":
            self.start_server([tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)
            import boto3

            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                         aws_secret_access_key="bench").create_bucket(Bucket="bench")
            url = f"s3://bench/v?endpoint_url={endpoint}&region=us-east-1&access_key=bench&secret_key=bench"
            return url, {"env": {"TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": endpoint, "ACCESS_KEY_ID": "bench",
                                 "SECRET_ACCESS_KEY": "bench", "REGION": "us-east-1"}}
        if backend == "azure":  # Azurite, its data under the scratch folder, with the well-known dev account
            self.start_server([tool("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                               str(self.scratch / f"azurite-{port}"), "--disableTelemetry", "--skipApiVersionCheck",
                               "--loose", "--silent"], port)
            from azure.storage.blob import BlobServiceClient

            endpoint += f"/{AZURITE_ACCOUNT}"
            BlobServiceClient(endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
                              ).create_container("bench")
            url = (f"az://bench/v?account_name={AZURITE_ACCOUNT}&account_key={quote(AZURITE_KEY, safe='')}"
                   f"&endpoint={endpoint}")
            return url, {"env": {"TYPE": "azureblob", "ACCOUNT": AZURITE_ACCOUNT, "KEY": AZURITE_KEY,
                                 "ENDPOINT": endpoint, "USE_EMULATOR": "true"}}
        if backend == "gcs":  # gcp-storage-emulator in memory, anonymous, as tests/servers.py starts it
            self.start_server([sys.executable, str(Path(settings.BASE_DIR) / "scripts" / "gcs_emulator.py"), "start",
                               "-H", "127.0.0.1", "--port", str(port), "--in-memory", "-q"], port,
                              env={"STORAGE_BASE": str(self.scratch)})
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            storage.Client(project="bench", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": endpoint}).create_bucket("bench")
            return f"gs://bench/v?endpoint={endpoint}&project=bench", {"env": {
                "TYPE": "google cloud storage", "ANONYMOUS": "true", "ENDPOINT": f"{endpoint}/storage/v1/"}}
        raise CommandError(f"unknown backend {backend!r}: use filesystem, s3, azure or gcs")

    def start_server(self, argv: list[str], port: int, env: dict | None = None) -> None:
        """Start a storage server (no shell: its pid is the server's) and wait until it takes connections."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=self.scratch, env={**os.environ, **(env or {})})
        self.servers.append(proc)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise CommandError(f"{argv[0]} did not answer on 127.0.0.1:{port} (exit code {proc.poll()}); "
                           "run scripts/install_tools.sh and pip install -r requirements-dev.txt")

    def new_volume(self, url: str) -> Volume:
        from volumes.services.volumes import volume_create
        from volumes.services.workspaces import workspace_ensure

        # The S3 server is the one this command started on 127.0.0.1: allow it for this save only.
        allowed = [*settings.VOLUMES.get("STORAGE_ALLOWED_HOSTS", ()), "127.0.0.1"]
        with self.settings_override(STORAGE_ALLOWED_HOSTS=allowed):
            ws = workspace_ensure(f"bench-{uuid.uuid4().hex[:8]}", storage_url=url)
            return volume_create(ws, "bench")

    def settings_override(self, **extra):
        from django.test import override_settings

        return override_settings(VOLUMES={**settings.VOLUMES, "MAX_VOLUMES_PER_WORKSPACE": 10**6,
                                          "MAX_FILE_SIZE": 10**12, **extra})

    def checkout(self, volume: Volume, cache_dir: Path):
        remote = DirectRemote()
        # A long TTL instead of a renewer thread: a cold push of a big dataset can outlast 60 s.
        lease = leases.acquire(volume.pk, "bench", ttl=3600)
        cached = WorkerCache(cache_dir, 10**13).volume(volume.workspace_id, volume.name)
        return remote, lease, cached

    def bench_backend(self, name: str, tree: Path, backend: str) -> None:
        url, rclone_remote = self.storage_url(backend)
        rclone = self.rclone_sync(tree, rclone_remote) if self.rclone else None
        cold_push, cold_pull, cp_push, cp_pull, checks = [], [], [], [], []
        noop, noop_push, change, change_push, add, delete = [], [], [], [], [], []
        rsync_noop, rsync_change, together_push, rsync_together, other_pull = [], [], [], [], []
        with self.settings_override():
            for run in range(self.runs):
                volume = self.new_volume(url)
                cache = self.scratch / f"cache-{uuid.uuid4().hex[:6]}"
                remote, lease, cached = self.checkout(volume, cache)
                base, _ = sync.pull(remote, lease, cached)
                cached.tree.rmdir()
                shutil.copytree(tree, cached.tree, symlinks=True)
                # cp -a right before the push it is compared with, from the same (warm) source tree.
                cp_push.append(self.cp_a(cached.tree))
                cold_push.append(timed(lambda: sync.push(remote, lease, cached, base)))
                remote.release(lease)

                fresh = self.scratch / f"cache-{uuid.uuid4().hex[:6]}"
                remote, lease, cached2 = self.checkout(volume, fresh)
                cold_pull.append(timed(lambda: sync.pull(remote, lease, cached2)))
                remote.release(lease)
                cp_pull.append(self.cp_a(tree))

                def cycle(mutate=None, push_times=None):
                    remote, lease, c = self.checkout(volume, fresh)
                    try:
                        base, _ = sync.pull(remote, lease, c)
                        if mutate:
                            mutate(c.tree)
                        started = time.perf_counter()
                        sync.push(remote, lease, c, base)
                        if push_times is not None:
                            push_times.append(time.perf_counter() - started)
                    finally:
                        remote.release(lease)

                sample = sorted(p.relative_to(cached2.tree) for p in cached2.tree.rglob("*.bin") if not p.is_symlink())
                pick = sample[run::100][: max(1, len(sample) // 100)]  # spread: one file in 100, everywhere
                together = sample[run * len(pick):(run + 1) * len(pick)]  # the same count, side by side

                def rewrite(t: Path, files=pick) -> None:
                    for q in files:
                        (t / q).write_bytes(os.urandom((t / q).stat().st_size))

                noop.append(timed(lambda: cycle(push_times=noop_push)))
                if rclone:  # rclone deciding that nothing changed, right after we did
                    checks.append(timed(lambda: rclone(["--checksum"])))
                change.append(timed(lambda: cycle(rewrite, change_push)))
                cycle(lambda t: rewrite(t, together), together_push)
                # Another worker (the first cache, generations behind) changes 1% side by side and commits; this
                # worker's next pull reads only the manifest parts that commit wrote.
                remote, lease, behind = self.checkout(volume, cache)
                try:
                    base, _ = sync.pull(remote, lease, behind)
                    rewrite(behind.tree, sample[len(sample) - len(pick):])
                    sync.push(remote, lease, behind, base)
                finally:
                    remote.release(lease)
                remote, lease, c = self.checkout(volume, fresh)
                try:
                    other_pull.append(timed(lambda: sync.pull(remote, lease, c)))
                finally:
                    remote.release(lease)
                add.append(timed(lambda: cycle(lambda t: [(t / f"added-{run}-{i}.bin").write_bytes(os.urandom(20_000))
                                                          for i in range(len(pick))])))
                delete.append(timed(lambda: cycle(lambda t: [(t / q).unlink() for q in pick])))
                if shutil.which("rsync"):
                    src, dst = self.scratch / "rsync-src", self.scratch / "rsync-dst"
                    subprocess.run(["cp", "-a", str(tree), str(src)], check=True)
                    subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True)
                    rsync_noop.append(timed(lambda: subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True)))
                    rewrite(src)
                    rsync_change.append(timed(lambda: subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True)))
                    rewrite(src, together)
                    rsync_together.append(timed(lambda: subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"],
                                                                        check=True)))
                    shutil.rmtree(src)
                    shutil.rmtree(dst)
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(fresh, ignore_errors=True)
        ref = f"{name}/{backend}"
        self.rows.append((ref, "cold push", f"{median(cold_push):.2f}s", ratio("cp -a", cp_push, cold_push)))
        self.rows.append((ref, "cold pull", f"{median(cold_pull):.2f}s", ratio("cp -a", cp_pull, cold_pull)))
        self.rows.append((ref, "no change: pull + push", f"{median(noop):.3f}s", ratio("rsync -a", rsync_noop, noop)))
        self.rows.append((ref, "no change: push (decide + commit)", f"{median(noop_push):.3f}s",
                          ratio("rsync -a", rsync_noop, noop_push)))
        self.rows.append((ref, "1% changed: pull + push", f"{median(change):.3f}s", ""))
        self.rows.append((ref, "1% changed, spread out: push", f"{median(change_push):.3f}s",
                          ratio("rsync -a", rsync_change, change_push)))
        self.rows.append((ref, "1% changed, side by side: push", f"{median(together_push):.3f}s",
                          ratio("rsync -a", rsync_together, together_push)))
        self.rows.append((ref, "1% changed side by side by another worker: pull", f"{median(other_pull):.3f}s",
                          ratio("rsync -a", rsync_together, other_pull)))
        self.rows.append((ref, "1% added: pull + push", f"{median(add):.3f}s", ""))
        self.rows.append((ref, "1% deleted: pull + push", f"{median(delete):.3f}s", ""))
        if rclone:
            first, pulled = rclone.cold_sync, self.rclone_copy_back(rclone)
            self.rows.append((ref, "cold push vs rclone sync (cold)", f"{median(cold_push):.2f}s",
                              ratio("rclone", [first], [median(cold_push)])))
            self.rows.append((ref, "cold pull vs rclone copy (cold)", f"{median(cold_pull):.2f}s",
                              ratio("rclone", [pulled], [median(cold_pull)])))
            self.rows.append((ref, "no change vs rclone sync --checksum", f"{median(noop):.3f}s",
                              faster("rclone", checks, noop)))
            self.rows.append((ref, "no change, decide + commit vs rclone --checksum", f"{median(noop_push):.3f}s",
                              faster("rclone", checks, noop_push)))

    def cp_a(self, source: Path) -> float:
        dest = self.scratch / f"cp-{uuid.uuid4().hex[:6]}"
        seconds = timed(lambda: subprocess.run(["cp", "-a", str(source), str(dest)], check=True))
        shutil.rmtree(dest)
        return seconds

    def rclone_sync(self, tree: Path, remote_cfg: dict):
        """`rclone sync` of the tree to a fresh target on the same storage, timed (its cold_sync); returns a
        function that runs the same sync again with extra arguments."""
        env = dict(os.environ)
        if "env" not in remote_cfg:
            target = str(self.scratch / f"rclone-{uuid.uuid4().hex[:6]}")
        else:
            env.update({f"RCLONE_CONFIG_BENCH_{key}": value for key, value in remote_cfg["env"].items()})
            target = f"bench:bench/rclone-{uuid.uuid4().hex[:6]}"
            env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 refuses a CA bundle with its own HTTP transport
        threads = str(settings.VOLUMES["TRANSFER_THREADS"])

        def rclone(extra: list[str], command: str = "sync", source: str = str(tree), dest: str = target) -> None:
            subprocess.run(["rclone", command, "--links", "--transfers", threads, "--checkers", threads, *extra,
                            source, dest], env=env, check=True, capture_output=True)

        rclone.target = target
        rclone.cold_sync = timed(lambda: rclone([]))
        return rclone

    def rclone_copy_back(self, rclone) -> float:
        """`rclone copy` of the synced target into an empty folder, like a cold pull: its time."""
        back = self.scratch / f"rclone-back-{uuid.uuid4().hex[:6]}"
        try:
            return timed(lambda: rclone([], command="copy", source=rclone.target, dest=str(back)))
        finally:
            shutil.rmtree(back, ignore_errors=True)

    # --- job overhead -------------------------------------------------------------------------
    def job_setup(self, tree: Path, cache: Path):
        """A workspace whose volume `big` holds `tree`, committed and cached in `cache`."""
        from volumes.services.workspaces import user_ensure, workspace_ensure

        url, _ = self.storage_url("filesystem")
        ws = workspace_ensure(f"bench-{uuid.uuid4().hex[:8]}", admins=["bench"], storage_url=url)
        user = user_ensure("bench")
        with self.settings_override(), self.cache_override(cache):
            volume = Volume.objects.create(workspace=ws, name="big", owner=user, storage=ws.volume_storage)
            remote, lease, cached = self.checkout(volume, cache)
            base, _ = sync.pull(remote, lease, cached)
            cached.tree.rmdir()
            shutil.copytree(tree, cached.tree, symlinks=True)
            pushed = timed(lambda: sync.push(remote, lease, cached, base))
            remote.release(lease)
        return ws, user, pushed

    SCRIPTS = [("no volume", "def main():\n    return 1\n"), ("volume", "# volume: big data\ndef main():\n    return 1\n"),
               ("reader", "# volume: big data (read-only)\ndef main():\n    return 1\n")]

    def bench_jobs(self, tree: Path) -> None:
        from volumes.models import Job
        from volumes.runner.run import job_run
        from volumes.services.jobs import job_submit

        cache = self.scratch / "job-cache"
        ws, user, _ = self.job_setup(tree, cache)
        with self.settings_override(), self.cache_override(cache):
            results = {}
            for label, script in self.SCRIPTS:  # a reader's first run fills the worker's snapshot
                starts, ends, totals = [], [], []
                for _ in range(self.runs + 1):
                    job = job_submit(ws, user, "python", script, enqueue=False)
                    job = job_run(job.pk)
                    assert job.status == Job.Status.SUCCESS, job.error
                    starts.append((job.script_started_at - job.created_at).total_seconds())
                    ends.append((job.finished_at - job.script_finished_at).total_seconds())
                    totals.append((job.finished_at - job.created_at).total_seconds())
                results[label] = (median(starts[1:]), median(ends[1:]), median(totals[1:]))
            self.job_rows("M, 10,000 files", results)

    def job_rows(self, label: str, results: dict, memory: dict | None = None) -> None:
        """Start (submitted -> script started), end (script ended -> job finished) and the whole job's time
        over a job without volumes: the whole counts what happens around the script inside the run too
        (giving the volumes to the job's user and taking them back)."""
        (s0, e0, t0), (s1, e1, t1) = results["no volume"], results["volume"]
        self.rows.append((f"jobs {label}", "start / end, no volume", f"{s0:.3f}s / {e0:.3f}s", ""))
        self.rows.append((f"jobs {label}", "start / end, cached volume", f"{s1:.3f}s / {e1:.3f}s", ""))
        if "reader" in results:
            self.rows.append((f"jobs {label}", "start / end, read-only volume (warm reader)",
                              f"{results['reader'][0]:.3f}s / {results['reader'][1]:.3f}s", ""))
        extra = f"peak RSS {memory['volume']:.0f} MB (no volume {memory['no volume']:.0f} MB)" if memory else ""
        self.rows.append((f"jobs {label}", "warm overhead (whole job over no volume)", f"{t1 - t0:.3f}s", extra))

    def bench_big(self, tree: Path) -> None:
        """Warm jobs on the 100,000-file volume, each in a fresh `run_script` process: time and peak memory."""
        from volumes.models import Job

        cache = self.scratch / "big-cache"
        ws, user, pushed = self.job_setup(tree, cache)
        self.rows.append(("L/filesystem", "cold push (setup)", f"{pushed:.2f}s", ""))
        env = {**os.environ, "VOLUMES_CACHE_DIR": str(cache), "VOLUMES_CACHE_MAX_BYTES": str(10**13)}
        results, memory = {}, {}
        for label, script in self.SCRIPTS:
            path = self.scratch / "big-job.py"
            path.write_text(script)
            starts, ends, totals, peaks = [], [], [], []
            for _ in range(self.runs + 1):
                command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_script", str(path),
                           "--workspace", ws.pk, "--user", user.username]
                peak = subprocess.run([sys.executable, "-c", PEAK_RSS_OF, *command], env=env, check=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
                job = Job.objects.filter(workspace=ws).latest("pk")
                starts.append((job.script_started_at - job.created_at).total_seconds())
                ends.append((job.finished_at - job.script_finished_at).total_seconds())
                totals.append((job.finished_at - job.created_at).total_seconds())
                peaks.append(int(peak) / 1024)  # KiB -> MiB
            results[label] = (median(starts[1:]), median(ends[1:]), median(totals[1:]))
            memory[label] = max(peaks[1:])
        self.job_rows("L, 100,000 files", results, memory)

    def cache_override(self, cache: Path):
        from django.test import override_settings

        return override_settings(VOLUMES={**settings.VOLUMES, "CACHE_DIR": cache, "MAX_VOLUMES_PER_WORKSPACE": 10**6,
                                          "MAX_FILE_SIZE": 10**12})

    def print_table(self) -> None:
        widths = [max(len(r[i]) for r in self.rows + [("data", "measure", "median", "reference")]) for i in range(4)]
        header = ("data", "measure", "median", "reference")
        for row in [header] + self.rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
