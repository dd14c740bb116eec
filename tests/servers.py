"""Real local storage servers for tests (a pytest plugin: `pytest_plugins = ["tests.servers"]`).

Session fixtures start each server once on a free 127.0.0.1 port as a background process,
wait until it answers, and stop it by its own pid at the end:

    moto_server   -> "http://127.0.0.1:PORT"           (S3; any access key works)
    azurite       -> Azurite(endpoint, connection_string, account_name, account_key)
    gcs_emulator  -> "http://127.0.0.1:PORT"           (GCS; anonymous)

`storage_backend` is parametrized over the four kinds and yields (kind, config) for a fresh,
empty bucket/container/folder per test; `make_store(kind, config)` builds the store.
`PrivateStorage` is a server of a test's own that it can stop and start again with its data.
A missing server binary fails the test and says to run scripts/install_tools.sh.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("filesystem", "s3", "azure", "gcs")
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_REGION = "us-east-1"
S3_KEYS = {"access_key": "testing", "secret_key": "testing"}
INSTALL_HINT = (
    "run `bash scripts/install_tools.sh` (Node tools into .tools/) and "
    "`.venv/bin/pip install -r requirements-dev.txt` (moto_server, gcp-storage-emulator)"
)


def ensure_django_settings() -> None:
    """django-storages reads Django settings: configure defaults when nothing else did.

    Under pytest-django (or with DJANGO_SETTINGS_MODULE set) the project's settings are used.
    """
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        settings.configure()


def find_tool(name: str) -> str:
    """A server binary from the repo's .venv or .tools, this interpreter's bin, or PATH."""
    candidates = [
        ROOT / ".venv" / "bin" / name,
        ROOT / ".tools" / "node_modules" / ".bin" / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"the test server {name!r} is not installed (looked in .venv/bin, .tools/node_modules/.bin "
                f"and PATH); {INSTALL_HINT}", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:] or "(no output)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(name: str, argv: list[str], port: int, log_dir: Path, ready: Callable[[], bool] | None = None,
                 timeout: float = 30.0, env: dict | None = None) -> Server:
    """Start argv (no shell, so proc.pid is the server itself) and wait until it answers."""
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    server = Server(name, proc, port, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with code {proc.returncode} before it was ready; "
                        f"command: {' '.join(argv)}\n--- its output ---\n{server.log()}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            if ready is None or ready():
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"{name} did not answer on 127.0.0.1:{port} within {timeout:.0f} s; "
                        f"command: {' '.join(argv)}\n--- its output ---\n{server.log()}", pytrace=False)
        time.sleep(0.1)


def _http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(url, timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answers HTTP
        except OSError:
            return False

    return ready


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


def _moto(server_logs: Path, env: dict | None = None) -> Iterator[Server]:
    port = free_port()
    server = start_server("moto_server", [find_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port,
                          server_logs, ready=_http_ok(f"http://127.0.0.1:{port}/moto-api/"), env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server(server_logs) -> Iterator[str]:
    """An S3 server (moto); yields its endpoint URL. It accepts any access key."""
    for server in _moto(server_logs):
        yield server.url


@pytest.fixture(scope="session")
def moto_server_with_auth(server_logs) -> Iterator[str]:
    """A second moto server that checks access keys against its IAM (INITIAL_NO_AUTH_ACTION_COUNT=0)."""
    for server in _moto(server_logs, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}):
        yield server.url


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account_name: str = AZURITE_ACCOUNT
    account_key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.endpoint};")


@pytest.fixture(scope="session")
def azurite(server_logs) -> Iterator[Azurite]:
    """The Azure Blob emulator with the well-known dev account; checks the account key."""
    port = free_port()
    location = tempfile.mkdtemp(prefix="azurite-")
    argv = [find_tool("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
            "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
    server = start_server("azurite-blob", argv, port, server_logs, ready=_http_ok(f"http://127.0.0.1:{port}/"))
    try:
        yield Azurite(endpoint=f"{server.url}/{AZURITE_ACCOUNT}")
    finally:
        server.stop()
        shutil.rmtree(location, ignore_errors=True)


@pytest.fixture(scope="session")
def gcs_emulator(server_logs) -> Iterator[str]:
    """A GCS emulator (in memory, anonymous, with GCS's create-only uploads: scripts/gcs_emulator.py); yields its
    endpoint URL."""
    tool = find_tool("gcp-storage-emulator")
    with open(tool, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    python = first[2:].strip() if first.startswith("#!") and "python" in first else sys.executable
    port = free_port()
    argv = [python, str(ROOT / "scripts" / "gcs_emulator.py"), "start", "-H", "127.0.0.1", "--port", str(port),
            "--in-memory", "-q"]
    server = start_server("gcp-storage-emulator", argv, port, server_logs,
                          ready=_http_ok(f"http://127.0.0.1:{port}/storage/v1/b"))
    try:
        yield server.url
    finally:
        server.stop()


def new_bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def create_bucket(kind: str, config: dict) -> None:
    """Create the bucket/container a (kind, config) names, with the vendor SDK."""
    if kind == "filesystem":
        Path(config["root"]).mkdir(parents=True, exist_ok=True)
    elif kind == "s3":
        import boto3

        boto3.client("s3", endpoint_url=config["endpoint_url"], region_name=config.get("region", S3_REGION),
                     aws_access_key_id=config["access_key"], aws_secret_access_key=config["secret_key"],
                     ).create_bucket(Bucket=config["bucket"])
    elif kind == "azure":
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(config["connection_string"]).create_container(config["container"])
    elif kind == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project=config.get("project", "test"), credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": config["endpoint"]})
        bucket = client.bucket(config["bucket"])
        bucket.soft_delete_policy.retention_duration_seconds = 0  # deleted objects go at once
        client.create_bucket(bucket)
    else:
        raise ValueError(kind)


def backend_config(kind: str, request, tmp_path: Path, prefix: str = "", create: bool = True) -> dict:
    """A config for a new, empty bucket of `kind` (its server started on first use)."""
    if kind == "filesystem":
        config = {"root": str(tmp_path / f"store-{uuid.uuid4().hex[:8]}")}
    elif kind == "s3":
        config = {"bucket": new_bucket_name(), "endpoint_url": request.getfixturevalue("moto_server"),
                  "region": S3_REGION, **S3_KEYS}
    elif kind == "azure":
        config = {"container": new_bucket_name(),
                  "connection_string": request.getfixturevalue("azurite").connection_string}
    elif kind == "gcs":
        config = {"bucket": new_bucket_name(), "endpoint": request.getfixturevalue("gcs_emulator"),
                  "project": "test"}
    else:
        raise ValueError(f"unknown storage kind {kind!r}")
    if create:
        create_bucket(kind, config)
    if prefix:
        config["prefix"] = prefix
    return config


def use_storage(workspace, kind: str, request, tmp_path: Path) -> None:
    """Make a fresh bucket of `kind` the workspace's volume storage (filesystem: keep the default one)."""
    from volumes.models import ObjectStorage
    from volumes.storage.factory import clear_store_cache

    if kind != "filesystem":
        storage = ObjectStorage.objects.create(workspace=workspace, name=f"{kind} store", kind=kind,
                                               config=backend_config(kind, request, tmp_path))
        workspace.volume_storage = storage
        workspace.save(update_fields=["volume_storage"])
    clear_store_cache()


def make_store(kind: str, config: dict, label: str | None = None):
    """build_store, with Django settings configured if nothing configured them."""
    ensure_django_settings()
    from volumes.storage.factory import build_store

    return build_store(kind, config, label=label)


@pytest.fixture(params=KINDS)
def storage_backend(request, tmp_path) -> tuple[str, dict]:
    """(kind, config) of a fresh, empty bucket/container/folder, for each of the four kinds."""
    ensure_django_settings()
    return request.param, backend_config(request.param, request, tmp_path)


# The GCS emulator rewrites its metadata file in place: a stop mid-write would lose every object.
# Write it as a real server keeps its data, atomically (it serves one request at a time).
_DURABLE_GCS_EMULATOR = """
import os, sys
from gcp_storage_emulator import storage

def write_bytes(self, rel, content):
    path = self._disk_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".tmp").write_bytes(content)
    os.replace(path.with_name(path.name + ".tmp"), path)

storage._FileStore.write_bytes = write_bytes
from gcp_storage_emulator.__main__ import main
sys.argv[0] = "gcp-storage-emulator"
sys.exit(main())
"""


class Gate:
    """A TCP port that forwards to a server's port while open; closed, it refuses connections and cuts the
    open ones, as a server that is down does."""

    def __init__(self, port: int) -> None:
        self.port, self.listener, self.connections = port, None, set()
        self.lock = threading.Lock()

    def open(self, target: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener, target), daemon=True).start()

    def _accept(self, listener: socket.socket, target: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            connections, self.connections = self.connections, set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class PrivateStorage:
    """A storage server of our own that a test can stop (kill) and start again with its data:
    Azurite and the GCS emulator keep their data on disk. Moto keeps running behind a Gate: stopped, the
    gate refuses connections and cuts the open ones, and what moto stored stays, as a real S3 keeps it.
    (Replaying moto's request recording after a kill was slow and broke on a half-written last request.)
    For the filesystem the root folder goes away (as an unmounted disk would)."""

    def __init__(self, kind: str, tmp_path: Path, logs: Path) -> None:
        self.kind, self.dir, self.logs, self.server = kind, tmp_path / f"private-{kind}", logs, None
        self.dir.mkdir()
        self.port = free_port()
        self.gate = Gate(self.port)
        bucket = f"private-{kind}"
        if kind == "filesystem":
            self.config = {"root": str(self.dir / "root")}
        elif kind == "s3":
            self.config = {"bucket": bucket, "endpoint_url": f"http://127.0.0.1:{self.port}", "region": S3_REGION,
                           **S3_KEYS}
        elif kind == "azure":
            from tests.servers import Azurite

            self.config = {"container": bucket,
                           "connection_string": Azurite(f"http://127.0.0.1:{self.port}/devstoreaccount1")
                           .connection_string}
        else:
            self.config = {"bucket": bucket, "endpoint": f"http://127.0.0.1:{self.port}", "project": "test"}
        self.start()
        create_bucket(kind, self.config)

    def _argv_env(self) -> tuple[list[str], dict]:
        if self.kind == "s3":
            self.moto_port = free_port()
            return [find_tool("moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)], {}
        if self.kind == "azure":
            return ([find_tool("azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
                     str(self.dir), "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"], {})
        find_tool("gcp-storage-emulator")  # fails the test with the install hint if it is missing
        return ([sys.executable, "-c", _DURABLE_GCS_EMULATOR, "start", "-H", "127.0.0.1", "--port", str(self.port),
                 "-q"], {"STORAGE_BASE": str(self.dir)})

    def start(self) -> None:
        if self.kind == "filesystem":
            root = Path(self.config["root"])
            if root.is_file():
                root.unlink()
                (self.dir / "away").rename(root)
            return
        if self.kind == "s3":
            if self.server is None:
                argv, env = self._argv_env()
                self.server = start_server("private-s3", argv, self.moto_port, self.logs, env=env, timeout=60)
            self.gate.open(self.moto_port)
            return
        argv, env = self._argv_env()
        self.server = start_server(f"private-{self.kind}", argv, self.port, self.logs, env=env, timeout=60)

    def stop(self) -> None:
        if self.kind == "filesystem":
            root = Path(self.config["root"])
            root.rename(self.dir / "away")
            root.write_text("not a folder: the disk is gone")
            return
        if self.kind == "s3":
            self.gate.close()
        else:
            self.server.stop()  # SIGTERM: Azurite saves its metadata only every few seconds and at exit

    def close(self) -> None:
        if self.kind == "s3":
            self.gate.close()
        if self.server is not None:
            self.server.stop()
