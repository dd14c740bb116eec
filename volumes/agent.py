"""Agent workers: the engine's Remote and the runner's Reporter over the REST API.

An agent worker holds only a server URL and an API token: no database, no storage
credentials. `HttpRemote` speaks to the engine endpoints (`/api/w/{ws}/agent/...`),
`HttpReporter` sends the job's log and figures, and `run_agent` claims and runs jobs
with the very same `volumes.runner.job.execute` as in-process workers.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Callable
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import exceptions
from .engine.commits import ChangeCounts
from .engine.leases import Holder, Lease
from .engine.manifest import Manifest
from .engine.remote import Remote
from .exceptions import LeaseHeld, LeaseTimeout, VolumesError

CHUNK = 1024 * 1024
TIMEOUT = (10, 120)  # connect, read (seconds)
LEASE_POLL = 25.0  # the server waits at most this long per acquire request
MISSING_BATCH = 5000


def _error_classes() -> dict[str, type[VolumesError]]:
    found: dict[str, type[VolumesError]] = {}
    pending = [VolumesError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def error_from_response(response: requests.Response) -> VolumesError:
    """The domain error a JSON error answer stands for, with its message and details."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error", "")
    message = str(body.get("detail") or response.reason or f"HTTP {response.status_code}")
    details = {k: v for k, v in body.items() if k not in ("error", "detail")}
    cls = _error_classes().get(code)
    if cls is None:
        cls = {
            401: exceptions.PermissionDenied, 403: exceptions.PermissionDenied, 404: exceptions.NotFound,
            409: exceptions.Conflict, 413: exceptions.LimitExceeded,
        }.get(response.status_code, VolumesError)
        if response.status_code >= 500:
            return exceptions.StorageUnavailable(
                "server", f"the server answered {response.status_code} to {response.request.method} "
                f"{response.url}: {message[:300]}"
            )
        if response.status_code in (401, 403) and not code.startswith("permission"):
            message = f"the server refused the token: {message}"
    error = cls.__new__(cls)
    VolumesError.__init__(error, message, **details)
    for key, value in details.items():
        if not hasattr(error, key):
            setattr(error, key, value)
    error.status = response.status_code
    return error


class ApiClient:
    """A requests session against one workspace of the server, with the token and retries.

    Connection errors (nothing was sent) are retried with backoff for every method;
    transfers retry themselves with a fresh body."""

    def __init__(self, server: str, token: str, workspace: str, retries: int = 5) -> None:
        self.server = server.rstrip("/")
        self.workspace = workspace
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})
        retry = Retry(total=retries, connect=retries, read=0, status=0, other=0, backoff_factor=0.3,
                      allowed_methods=None, raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        if path.startswith("/"):  # not under a workspace, e.g. "/workspaces/"
            return f"{self.server}/api{path}"
        return f"{self.server}/api/w/{quote(self.workspace, safe='')}/{path}"

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            response = self.session.request(method, self.url(path), **kwargs)
        except requests.ConnectionError as exc:
            raise exceptions.StorageUnavailable("server", f"cannot reach {self.server}: {exc}") from exc
        except requests.Timeout as exc:
            raise exceptions.StorageUnavailable("server", f"{self.server} did not answer in time: {exc}") from exc
        if response.status_code not in ok:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None


def _q(name: str) -> str:
    return quote(name, safe="")


class HttpRemote(Remote):
    """The engine's Remote for one claimed job, over the agent endpoints."""

    def __init__(self, client: ApiClient, job_id: int, job_key: str) -> None:
        self.client = client
        self.job_id = job_id
        self.headers = {"X-Job-Key": job_key}

    def _mount(self, name: str, rest: str) -> str:
        return f"agent/jobs/{self.job_id}/volumes/{_q(name)}/{rest}"

    def _post(self, name: str, rest: str, body: dict) -> Any:
        return self.client.json("POST", self._mount(name, rest), json=body, headers=self.headers)

    def acquire(self, workspace_id, volume_name, holder, job_id=None, wait=None, on_wait=None) -> Lease:
        from . import conf

        wait = conf.get("LEASE_WAIT_MAX") if wait is None else wait
        deadline = time.monotonic() + wait
        last_report, poll = None, 0.0  # first just try, so a wait is reported at once
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                data = self._post(volume_name, "lease/", {"holder": holder, "wait": min(poll, remaining)})
            except LeaseHeld as exc:
                who = _holder(exc)
                now = time.monotonic()
                if now >= deadline:
                    raise LeaseTimeout(
                        f"volume {volume_name!r} is still held by {who.describe() if who else 'another job'} "
                        f"after waiting {wait:.0f}s; retry when that job has finished, or raise "
                        "VOLUMES_LEASE_WAIT_MAX",
                        holder=who.describe() if who else "",
                    ) from None
                if on_wait and (last_report is None or now - last_report >= 30):
                    on_wait(who)
                    last_report = now
                poll = LEASE_POLL
                continue
            return Lease(**{k: data[k] for k in Lease.__dataclass_fields__})

    def renew(self, lease: Lease) -> None:
        self._post(lease.volume_name, "lease/renew/", {"token": lease.token})

    def release(self, lease: Lease) -> bool:
        try:
            return bool(self._post(lease.volume_name, "lease/release/", {"token": lease.token})["released"])
        except exceptions.StorageUnavailable:
            return False  # the server is unreachable: the lease expires by its TTL

    def read_manifest(self, lease: Lease) -> Manifest:
        if not lease.manifest_key:
            return Manifest()
        response = self.client.request(
            "GET", self._mount(lease.volume_name, "manifest/"),
            params={"token": lease.token, "generation": lease.generation}, headers=self.headers,
        )
        return Manifest.from_json(response.content)

    def missing_blobs(self, lease: Lease, hashes: set[str]) -> set[str]:
        ordered, missing = sorted(hashes), set()
        for i in range(0, len(ordered), MISSING_BATCH):
            data = self._post(lease.volume_name, "blobs/missing/",
                              {"token": lease.token, "hashes": ordered[i:i + MISSING_BATCH]})
            missing.update(data["missing"])
        return missing

    def _transfer(self, action: Callable[[], None], what: str) -> None:
        for attempt in range(3):
            try:
                return action()
            except (exceptions.StorageUnavailable, requests.RequestException) as exc:
                if attempt == 2:
                    if isinstance(exc, VolumesError):
                        raise
                    raise exceptions.StorageUnavailable("server", f"{what} failed: {exc}") from exc
                time.sleep(0.5 * (attempt + 1))

    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        def fetch() -> None:
            response = self.client.request(
                "GET", self._mount(lease.volume_name, f"blobs/{digest}"), params={"token": lease.token},
                headers=self.headers, stream=True,
            )
            with response, open(local_path, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)

        self._transfer(fetch, f"downloading blob {digest}")

    def upload_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        def send() -> None:
            with open(local_path, "rb") as body:
                self.client.request(
                    "PUT", self._mount(lease.volume_name, f"blobs/{digest}"), params={"token": lease.token},
                    data=body, headers={**self.headers, "Content-Type": "application/octet-stream"},
                )

        self._transfer(send, f"uploading blob {digest}")

    def commit(self, lease, parent, manifest, counts: ChangeCounts, job_id=None, message="") -> tuple[int, str]:
        manifest.generation = parent + 1
        data = self._post(lease.volume_name, "commit/", {
            "token": lease.token, "parent": parent, "message": message[:300],
            "manifest": json.loads(manifest.to_json()),
        })
        return int(data["generation"]), data["manifest_key"]


def _holder(exc: VolumesError) -> Holder | None:
    details = exc.details
    if not details.get("holder"):
        return None
    since = None
    if details.get("since"):
        try:
            since = datetime.fromisoformat(str(details["since"]))
        except ValueError:
            since = None
    return Holder(str(details["holder"]), int(details.get("holder_job") or 0) or None, since, None)


class HttpReporter:
    """The runner's Reporter for one claimed job: log lines (flushed by a background thread every
    FLUSH_SECONDS, so a job waiting for a lease says so at once), status and figures over HTTP."""

    FLUSH_SECONDS = 0.5

    def __init__(self, client: ApiClient, job_id: int, job_key: str, echo: Callable[[str], None] | None = None):
        self.client = client
        self.base = f"agent/jobs/{job_id}/"
        self.headers = {"X-Job-Key": job_key}
        self.echo = echo
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="log-flusher", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.FLUSH_SECONDS):
            try:
                self.flush()
            except VolumesError:
                pass  # kept for the next try

    def _post(self, rest: str, body: dict | None = None) -> Any:
        return self.client.json("POST", self.base + rest, json=body or {}, headers=self.headers)

    def log(self, line: str) -> None:
        stamped = f"[{datetime.now(dt_timezone.utc):%H:%M:%S}] {line}".replace("\x00", "\ufffd")
        if self.echo:
            self.echo(stamped)
        with self._lock:
            self._buffer.append(stamped + "\n")

    def flush(self) -> None:
        with self._send_lock:  # one sender at a time keeps the lines in order
            with self._lock:
                text, self._buffer = "".join(self._buffer), []
            if not text:
                return
            try:
                self._post("log/", {"text": text})
            except exceptions.StorageUnavailable:
                with self._lock:  # keep the lines for the next flush
                    self._buffer.insert(0, text)
                raise

    def status(self, status: str) -> None:
        self._post("status/", {"status": status})

    def heartbeat(self) -> bool:
        return bool(self._post("heartbeat/")["cancel"])

    def mount_figures(self, volume_name: str, **figures: Any) -> None:
        self.client.json("POST", f"{self.base}volumes/{_q(volume_name)}/figures/", json={"figures": figures},
                         headers=self.headers)

    def script_started(self) -> None:
        self._post("script/", {"event": "started"})

    def script_finished(self) -> None:
        self._post("script/", {"event": "finished"})

    def close(self) -> None:
        self._closed.set()
        self._flusher.join()

    def finish(self, status: str, result: Any = None, error: str = "") -> None:
        self.close()
        self.flush()
        self._post("finish/", {"status": status, "result": result, "error": (error or "").replace("\x00", "\ufffd")})


@dataclass(frozen=True)
class AgentMount:
    """A mount plan as the server decided it (MountPlan-like for the runner)."""

    name: str
    mount_path: str
    read_only: bool
    line: int = 0
    max_size: int | None = None


def claim(client: ApiClient, worker: str) -> dict | None:
    """The next job's spec from the server, or None when nothing is queued."""
    response = client.request("POST", "agent/claim/", json={"worker": worker})
    return None if response.status_code == 204 else response.json()


def agent_workspaces(server: str, token: str) -> list[str]:
    """The workspaces where the token's user may run agent workers."""
    rows = ApiClient(server, token, "").request("GET", "/workspaces/").json()
    return [row["id"] for row in rows if row["can_run_agents"]]


def claim_any(clients: list[ApiClient], worker: str) -> tuple[ApiClient | None, dict | None]:
    """The oldest queued job of the first workspace that has one, as (client, spec); (None, None) when idle."""
    for client in clients:
        spec = claim(client, worker)
        if spec is not None:
            return client, spec
    return None, None


def apply_server_settings(values: dict) -> None:
    """Run with the server's TTLs and limits, so both sides judge leases and sizes alike."""
    from django.conf import settings

    settings.VOLUMES = {**getattr(settings, "VOLUMES", {}), **values}


def run_claimed(client: ApiClient, spec: dict, cache, worker: str, echo=None) -> str:
    """Run one claimed job with the shared runner; returns its final status."""
    from .runner.job import JobSpec, execute

    apply_server_settings(spec.get("settings") or {})
    job_id, key = spec["id"], spec["job_key"]
    reporter = HttpReporter(client, job_id, key, echo=echo)
    job_spec = JobSpec(
        job_id, spec["workspace_id"], spec["language"], spec["content"], spec.get("args") or {},
        bool(spec.get("sandbox")), [AgentMount(**m) for m in spec.get("mounts", [])],
    )
    try:
        outcome = execute(job_spec, HttpRemote(client, job_id, key), cache, reporter, holder=f"{worker} job {job_id}")
    except Exception as exc:  # never leave a claimed job running on the server
        reporter.log(f"error: the agent failed: {exc.__class__.__name__}: {exc}")
        reporter.finish("failure", error=f"agent worker error: {exc}")
        raise
    reporter.finish(outcome.status, result=outcome.result, error=outcome.error)
    return outcome.status
