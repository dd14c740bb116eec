#!/usr/bin/env python
"""Small measurements behind docs/scaling.md. Run from the repository root with the venv active:

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/volumes_bench   # created if missing
    export CELERY_BROKER_URL=redis://127.0.0.1:6379/8                       # only for `jobs`
    python scripts/bench_scaling.py leases [--seconds 5] [--procs 1,4,8]
    python scripts/bench_scaling.py jobs   [--jobs 20]
    python scripts/bench_scaling.py blobs  [--mib 64] [--small 400] [--s3]
    python scripts/bench_scaling.py queries [--repeat 30]

leases: lease acquire+release (and renew) per second on the database, N processes, each on its
        own volume (uncontended) and all on one volume (contended, try-acquire without waiting).
jobs:   per-job time of a job with an empty script (with and without one volume) run by a Celery
        worker process and by an agent worker process against `manage.py runserver`.
blobs:  push (missing + uploads + commit) and pull (manifest + downloads) throughput through the agent
        proxy (HttpRemote -> web server -> storage), agent-direct (HttpRemote with presigned URLs ->
        storage; the commit checks the uploads) and direct (DirectRemote -> storage), filesystem storage
        (and S3 on moto_server with --s3), 8 transfer threads like a job's sync.
queries: database queries and time inside Django per agent request (test client, in process).
Everything lives in the database named by DATABASE_URL and under VOLUMES_DATA_DIR
(default var/bench-scale): use a database of its own, never production.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "volumes_site.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/volumes_bench")
os.environ.setdefault("VOLUMES_DATA_DIR", str(ROOT / "var" / "bench-scale"))
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("VOLUMES_EDITION", "enterprise")  # every run makes new volumes: no 20-volume limit
os.environ.setdefault("SECRET_KEY", __import__("secrets").token_urlsafe(50))  # production settings need one
WORKSPACE = "bench"


def setup(migrate: bool = False) -> None:
    import django

    if migrate:
        _create_database()
    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def _create_database() -> None:
    url = os.environ["DATABASE_URL"]
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def workspace():
    from volumes.services.workspaces import workspace_ensure

    store = Path(os.environ["VOLUMES_DATA_DIR"]) / "storage"
    store.mkdir(parents=True, exist_ok=True)
    return workspace_ensure(WORKSPACE, admins=["bench-admin"], members=["bench-user"], storage_url=f"file://{store}")


def volume(name: str):
    from django.contrib.auth import get_user_model

    from volumes.models import Volume
    from volumes.services.volumes import volume_create

    from volumes.models import Workspace

    # Not workspace(): it selects the filesystem storage again, under a blobs run on S3.
    ws = Workspace.objects.filter(pk=WORKSPACE).first() or workspace()
    found = Volume.objects.filter(workspace=ws, name=name).first()
    return found or volume_create(ws, name, owner=get_user_model().objects.get(username="bench-admin"))


def machine() -> str:
    import platform

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load}")


# Leases --------------------------------------------------------------------------------------------

def _lease_proc(volume_id: int, seconds: float, start_at: float, renew: bool, out) -> None:
    setup()
    from django.db import connection

    from volumes.engine import leases

    connection.ensure_connection()
    while time.time() < start_at:
        time.sleep(0.001)
    done = misses = renews = 0
    end = time.time() + seconds
    while time.time() < end:
        lease = leases.try_acquire(volume_id, f"bench {os.getpid()}", ttl=60)
        if lease is None:
            misses += 1
            continue
        if renew:
            leases.renew(lease)
            renews += 1
        leases.release(lease)
        done += 1
    out.put((done, misses, renews))


def bench_leases(args) -> None:
    setup(migrate=True)
    from django.db import connection

    print(f"# leases on {connection.vendor} {connection.settings_dict['HOST']}; {machine()}")
    ids = [volume(f"lease-bench-{i}").pk for i in range(max(args.procs))]
    ctx = mp.get_context("spawn")
    print("| processes | volumes | acquire+release/s | failed try-acquires/s | with renew: acquire+renew+release/s |")
    print("|---|---|---|---|---|")
    for procs in args.procs:
        for contended in (False, True):
            row = []
            for renew in (False, True):
                out = ctx.Queue()
                start_at = time.time() + 2.0  # every process connected before the clock starts
                workers = [ctx.Process(target=_lease_proc, args=(ids[0] if contended else ids[i], args.seconds,
                                                                start_at, renew, out)) for i in range(procs)]
                for w in workers:
                    w.start()
                results = [out.get() for _ in workers]
                for w in workers:
                    w.join()
                done = sum(r[0] for r in results) / args.seconds
                misses = sum(r[1] for r in results) / args.seconds
                row.append((done, misses))
            where = "1 shared" if contended else f"{procs} (one each)"
            print(f"| {procs} | {where} | {row[0][0]:,.0f} | {row[0][1]:,.0f} | {row[1][0]:,.0f} |")
    connection.close()


# Jobs ------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                            cwd=ROOT, env=dict(os.environ), stdout=log, stderr=log, start_new_session=True)
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/api/schema/", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=get_user_model().objects.get(username="bench-admin"))[0].key


EMPTY = "def main():\n    return 1\n"
ONE_VOLUME = "# volume: job-bench state\ndef main():\n    return 1\n"


def _run_batch(kind: str, content: str, n: int, tmp: Path, server: str) -> tuple[float, float]:
    """(seconds per job from the first start to the last finish, mean seconds claim -> finish)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Max, Min

    from volumes.models import Job
    from volumes.services.jobs import job_submit

    ws, user = workspace(), get_user_model().objects.get(username="bench-user")
    Job.objects.filter(workspace=ws).exclude(status__in=Job.FINISHED).update(status="cancelled")
    if kind == "agent":
        cmd = [sys.executable, "manage.py", "agent_worker", "--server", server, "--token", token(),
               "--workspace", WORKSPACE, "--cache-dir", str(tmp / "agent-cache"), "--poll", "0.05"]
        env = {**os.environ, "DATABASE_URL": f"postgres://nobody@127.0.0.1:{free_port()}/none"}
    else:
        cmd = [sys.executable, "-m", "celery", "-A", "volumes_site", "worker", "--pool", "solo",
               "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        env = {**os.environ, "VOLUMES_CACHE_DIR": str(tmp / "celery-cache")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"{kind}.log", "a"), start_new_session=True)
    try:
        for count in (2, n):  # two warm-up jobs first (imports, first pull), then the measured ones
            jobs = [job_submit(ws, user, "python", content, enqueue=(kind == "celery")) for _ in range(count)]
            ids = [j.pk for j in jobs]
            deadline = time.time() + 300
            while Job.objects.filter(pk__in=ids, status__in=Job.FINISHED).count() < count:
                if time.time() > deadline:
                    raise SystemExit(f"{kind}: jobs did not finish; see {tmp / (kind + '.log')}")
                time.sleep(0.05)
    finally:
        stop(proc)
    done = Job.objects.filter(pk__in=ids)
    bad = done.exclude(status="success").count()
    if bad:
        raise SystemExit(f"{kind}: {bad} jobs failed: {done.exclude(status='success').first().error}")
    span = done.aggregate(a=Min("started_at"), b=Max("finished_at"))
    each = [(j.finished_at - j.started_at).total_seconds() for j in done]
    return (span["b"] - span["a"]).total_seconds() / n, sum(each) / n


def bench_jobs(args) -> None:
    setup(migrate=True)
    from django.db import connection

    workspace()
    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    port = free_port()
    server = start_server(port, open(tmp / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    print(f"# jobs: {args.jobs} jobs per row, one worker process; {connection.vendor}, broker "
          f"{settings.CELERY_BROKER_URL.split('://')[0]}, web server `manage.py runserver`; {machine()}")
    print("| worker | script | s/job (first start -> last finish) | mean s claim -> finish |")
    print("|---|---|---|---|")
    try:
        for content, label in ((EMPTY, "empty, no volume"), (ONE_VOLUME, "empty, 1 volume (1 file)")):
            for kind in ("celery", "agent"):
                per_job, mean = _run_batch(kind, content, args.jobs, tmp, url)
                print(f"| {kind} | {label} | {per_job:.3f} | {mean:.3f} |")
    finally:
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


# Blobs -----------------------------------------------------------------------------------------------

def _files(folder: Path, count: int, size: int) -> list[tuple[str, Path]]:
    import hashlib

    folder.mkdir(parents=True)
    out = []
    for i in range(count):
        data = os.urandom(size)
        path = folder / f"f{i}"
        path.write_bytes(data)
        out.append((hashlib.sha256(data).hexdigest(), path))
    return out


def _moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import boto3
    import requests

    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x",
                 region_name="us-east-1").create_bucket(Bucket="bench")
    return proc, endpoint


def _push_pull(remote, name: str, job, files: list, size: int) -> tuple[float, float]:
    """Seconds of a whole push of the files (which are missing, upload, commit) and of a whole pull (manifest,
    download), 8 threads like a job's sync."""
    from volumes.engine.commits import ChangeCounts
    from volumes.engine.manifest import Entry, Manifest

    manifest = Manifest({f"f{i}": Entry(f"f{i}", "file", size, digest, gen=1) for i, (digest, _) in enumerate(files)})
    lease = remote.acquire(WORKSPACE, name, "bench", job_id=job and job.pk, wait=5)
    remote.prepare(lease)
    with ThreadPoolExecutor(8) as pool:
        t0 = time.perf_counter()
        missing = remote.missing_blobs(lease, {digest for digest, _ in files})
        list(pool.map(lambda f: remote.upload_blob(lease, f[0], str(f[1])), [f for f in files if f[0] in missing]))
        remote.commit(lease, 0, manifest, ChangeCounts.between(Manifest(), manifest), job_id=job and job.pk)
        up = time.perf_counter() - t0
        remote.release(lease)
        lease = remote.acquire(WORKSPACE, name, "bench", job_id=job and job.pk, wait=5)
        t0 = time.perf_counter()
        remote.read_manifest(lease)
        list(pool.map(lambda f: remote.download_blob(lease, f[0], str(f[1]) + ".got"), files))
        down = time.perf_counter() - t0
    remote.release(lease)
    return up, down


def bench_blobs(args) -> None:
    setup(migrate=True)
    from django.contrib.auth import get_user_model

    from volumes.agent import ApiClient, HttpRemote, claim
    from volumes.engine.remote import DirectRemote
    from volumes.models import ObjectStorage
    from volumes.services.jobs import job_submit

    from volumes.models import Job

    ws = workspace()
    Job.objects.filter(workspace=ws).exclude(status__in=Job.FINISHED).update(status="cancelled")  # earlier runs
    backends = [("filesystem", ws.volume_storage)]
    moto = None
    if args.s3:
        moto, endpoint = _moto()
        from volumes.storage.factory import parse_storage_url

        kind, config = parse_storage_url(
            f"s3://bench/p?endpoint_url={endpoint}&region=us-east-1&access_key=x&secret_key=x")
        s3 = ObjectStorage.objects.create(workspace=ws, name=f"bench-s3-{int(time.time())}", kind=kind,
                                          config=config)
        backends.append(("s3 (moto_server)", s3))
    tmp = Path(tempfile.mkdtemp(prefix="bench-blobs-"))
    port = free_port()
    server = start_server(port, open(tmp / "server.log", "w"))
    client = ApiClient(f"http://127.0.0.1:{port}", token(), WORKSPACE)
    print(f"# blobs: web server `manage.py runserver`, 8 transfer threads; {machine()}")
    print("| storage | path | files | upload MiB/s (files/s) | download MiB/s (files/s) |")
    print("|---|---|---|---|---|")
    try:
        for label, storage in backends:
            ws.volume_storage = storage
            ws.save(update_fields=["volume_storage"])
            for size_label, count, size in ((f"{args.mib // 4} x 4 MiB", args.mib // 4, 4 << 20),
                                            (f"{args.small} x 4 KiB", args.small, 4 << 10)):
                for path in ("direct", "agent", "agent-direct"):
                    name = f"blob-bench-{int(time.time() * 1000) % 10**9}"
                    files = _files(tmp / name, count, size)
                    if path == "agent-direct" and storage.kind == "filesystem":
                        continue  # cannot sign: the same as "agent"
                    if path != "direct":  # a claimed job that mounts the volume (the claim creates it)
                        job = job_submit(ws, get_user_model().objects.get(username="bench-admin"), "python",
                                         f"# volume: {name} data\ndef main():\n    pass\n", enqueue=False)
                        spec = claim(client, "bench")
                        assert spec and spec["id"] == job.pk, spec
                        remote = HttpRemote(client, job.pk, spec["job_key"])
                        if path == "agent":  # through the proxy although the server gives URLs
                            remote.direct.add = lambda *args: None
                    else:
                        job, remote = None, DirectRemote()
                        volume(name)
                    up, down = _push_pull(remote, name, job, files, size)
                    if path != "direct":
                        client.json("POST", f"agent/jobs/{job.pk}/finish/", json={"status": "success"},
                                    headers={"X-Job-Key": spec["job_key"]})
                    mib = count * size / 2**20
                    print(f"| {label} | {path} | {size_label} | {mib / up:,.1f} ({count / up:,.0f}) | "
                          f"{mib / down:,.1f} ({count / down:,.0f}) |", flush=True)
                    shutil.rmtree(tmp / name)
    finally:
        ws.volume_storage = backends[0][1]
        ws.save(update_fields=["volume_storage"])
        stop(server)
        if moto:
            stop(moto)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_queries(args) -> None:
    """Database queries and server time per agent request (in process, Django's test client)."""
    setup(migrate=True)
    import hashlib

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from volumes.models import Job
    from volumes.services.jobs import job_submit

    ws = workspace()
    Job.objects.filter(workspace=ws).exclude(status__in=Job.FINISHED).update(status="cancelled")
    name = f"query-bench-{int(time.time() * 1000) % 10**9}"
    job_submit(ws, get_user_model().objects.get(username="bench-admin"), "python",
               f"# volume: {name} data\ndef main():\n    pass\n", enqueue=False)
    client = Client(HTTP_AUTHORIZATION=f"Token {token()}")
    base = f"/api/w/{WORKSPACE}/agent/"

    def call(method, path, **kw):
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            response = getattr(client, method)(base + path, **kw)
            took = time.perf_counter() - t0
        assert response.status_code < 300, (path, response.status_code, response.content[:300])
        return response, len(queries), took

    spec, n_claim, _ = call("post", "claim/", data={"worker": "q"}, content_type="application/json")
    spec = spec.json()
    key = {"HTTP_X_JOB_KEY": spec["job_key"]}
    vol = f"jobs/{spec['id']}/volumes/{name}/"
    lease, n_acq, _ = call("post", vol + "lease/", data={"holder": "q", "wait": 0}, content_type="application/json",
                           **key)
    tok = lease.json()["token"]
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()
    rows = [("claim (a job with one volume)", n_claim, None), ("lease acquire", n_acq, None)]
    for label, method, path, kw in (
        ("lease renew", "post", vol + "lease/renew/", {"data": {"token": tok}, "content_type": "application/json"}),
        ("heartbeat", "post", f"jobs/{spec['id']}/heartbeat/", {}),
        ("log lines", "post", f"jobs/{spec['id']}/log/", {"data": {"text": "x\n"}, "content_type": "application/json"}),
        ("blobs/missing (1 hash)", "post", vol + "blobs/missing/",
         {"data": {"token": tok, "hashes": [digest]}, "content_type": "application/json"}),
        ("blob PUT 4 KiB", "put", vol + f"blobs/{digest}?token={tok}",
         {"data": data, "content_type": "application/octet-stream"}),
        ("blob GET 4 KiB", "get", vol + f"blobs/{digest}?token={tok}", {}),
    ):
        times, count = [], 0
        for _ in range(args.repeat):
            response, count, took = call(method, path, **kw, **key)
            if method == "get":
                b"".join(response.streaming_content)
            times.append(took)
        rows.append((label, count, sorted(times)[len(times) // 2]))
    print(f"# agent requests in process (no HTTP, no connection set-up); {connection.vendor}; {machine()}")
    print("| request | database queries | median ms in Django |")
    print("|---|---|---|")
    for label, count, took in rows:
        print(f"| {label} | {count} | {'' if took is None else f'{took * 1000:.1f}'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("leases")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--procs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    p = sub.add_parser("jobs")
    p.add_argument("--jobs", type=int, default=20)
    p = sub.add_parser("blobs")
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--small", type=int, default=400)
    p.add_argument("--s3", action="store_true")
    p = sub.add_parser("queries")
    p.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    {"leases": bench_leases, "jobs": bench_jobs, "blobs": bench_blobs, "queries": bench_queries}[args.what](args)


if __name__ == "__main__":
    main()
