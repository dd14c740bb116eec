"""The engine's Remote over the agent endpoints (`/api/w/{ws}/agent/jobs/{id}/volumes/...`)."""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from typing import Any, Callable

import requests

from .. import exceptions
from ..engine import manifest_store
from ..engine.commits import ChangeCounts
from ..engine.leases import Holder, Lease
from ..engine.manifest import Manifest
from ..engine.pins import Pin
from ..engine.remote import Remote
from ..engine.retry import retrying
from ..exceptions import LeaseHeld, LeaseTimeout, VolumesError
from .client import CHUNK, ApiClient, connection_reason, url_segment
from .direct import DirectTransfers

LEASE_POLL = 25.0  # the server waits at most this long per acquire request
MISSING_BATCH = 5000
PARTS_BATCH = 500  # manifest parts a request: about 5 MB


class _ServerManifest:
    """A stored manifest read through the server the way manifest_store.read reads one from storage: its document
    (the manifest itself, from a server that keeps no parts), then only the parts it asks for, PARTS_BATCH a
    request. manifest_store checks every part against its name: the server is not trusted with their bytes."""

    def __init__(self, remote: "HttpRemote", lease: Lease) -> None:
        self.remote, self.lease = remote, lease

    def get_bytes(self, key: str) -> bytes:
        if key != self.lease.manifest_key:
            return self.get_many([key])[0]
        remote, lease = self.remote, self.lease
        return remote.client.request(
            "GET", remote._mount(lease.volume_name, "manifest/"), headers=remote.headers,
            params={**remote._read_under(lease), "generation": lease.generation, "stored": 1}).content

    def get_many(self, keys: list[str]) -> list[bytes]:
        remote, lease = self.remote, self.lease
        digests = [key.rpartition("/")[2].removesuffix(".json") for key in keys]
        parts: list[bytes] = []
        for i in range(0, len(digests), PARTS_BATCH):
            batch = digests[i:i + PARTS_BATCH]
            response = remote.client.request(
                "POST", remote._mount(lease.volume_name, "manifest/parts/"), headers=remote.headers,
                json={**remote._read_under(lease), "generation": lease.generation, "digests": batch})
            parts += manifest_store.unpack_parts(response.content, len(batch))
        return parts


class HttpRemote(Remote):
    """The engine's Remote for one claimed job, over the agent endpoints."""

    def __init__(self, client: ApiClient, job_id: int, job_key: str) -> None:
        self.client = client
        self.job_id = job_id
        self.headers = {"X-Job-Key": job_key}
        self.direct = DirectTransfers()
        self._notified = threading.Event()

    def _mount(self, name: str, rest: str) -> str:
        return f"agent/jobs/{self.job_id}/volumes/{url_segment(name)}/{rest}"

    def _post(self, name: str, rest: str, body: dict) -> Any:
        return self.client.json("POST", self._mount(name, rest), json=body, headers=self.headers)

    def acquire(self, workspace_id, volume_name, holder, job_id=None, wait=None, on_wait=None) -> Lease:
        from .. import conf

        wait = conf.get("LEASE_WAIT_MAX") if wait is None else wait
        deadline = time.monotonic() + wait
        last_report, poll = None, 0.0  # first just try, so a wait is reported at once
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            sent = time.monotonic()
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
            return Lease(**{k: data[k] for k in Lease.__dataclass_fields__ if k != "sent_at"}, sent_at=sent)

    def renew(self, lease: Lease) -> None:
        self._post(lease.volume_name, "lease/renew/", {"token": lease.token})

    def release(self, lease: Lease) -> bool:
        try:
            return bool(self._post(lease.volume_name, "lease/release/", {"token": lease.token})["released"])
        except exceptions.StorageUnavailable:
            return False  # the server is unreachable: the lease expires by its TTL
        except exceptions.JobFinished:
            return False  # the server finished the job (reaped, say) and released its leases itself

    def pin(self, workspace_id, volume_name, holder, job_id=None) -> Pin:
        sent = time.monotonic()
        data = self._post(volume_name, "pin/", {"holder": holder})
        return Pin(**{k: data[k] for k in Pin.__dataclass_fields__ if k != "sent_at"}, sent_at=sent)

    def renew_pin(self, pin: Pin) -> None:
        self._post(pin.volume_name, "pin/renew/", {"pin": pin.pin_id})

    def release_pin(self, pin: Pin) -> bool:
        try:
            return bool(self._post(pin.volume_name, "pin/release/", {"pin": pin.pin_id})["released"])
        except (exceptions.StorageUnavailable, exceptions.JobFinished):
            return False  # unreachable (the pin expires by its TTL) or finished (the server dropped it)

    @staticmethod
    def _read_under(lease: Lease) -> dict:
        """A read-only mount reads under its pin, a read-write one under its lease."""
        return {"pin": lease.pin_id} if isinstance(lease, Pin) else {"token": lease.token}

    def read_manifest(self, lease: Lease, like: Manifest | None = None) -> Manifest:
        if not lease.manifest_key:
            return Manifest()
        if like is not None and like.runs:
            # Another generation of the volume is here: its parts that the new one shares are not fetched
            # (100,000 entries are 19 MB of JSON whole; a change side by side brings a few parts of 10 KB).
            try:
                return manifest_store.read(_ServerManifest(self, lease), lease.manifest_key, like)
            except exceptions.NotFound:
                pass  # a server without manifest parts: the whole manifest, as before
        response = self.client.request(
            "GET", self._mount(lease.volume_name, "manifest/"),
            params={**self._read_under(lease), "generation": lease.generation}, headers=self.headers,
        )
        return Manifest.from_json(response.content, like=like, runs=True)  # the server sends it whole

    def will_download(self, lease: Lease, hashes: set[str]) -> None:
        """Presigned downloads of these blobs, where the server's storage signs them (the others of the manifest are
        in the cache already: a pull after a one-file change elsewhere asks for one URL, not one a file)."""
        ordered = sorted(hashes)
        for i in range(0, len(ordered), MISSING_BATCH):
            try:
                data = self._post(lease.volume_name, "blobs/urls/",
                                  {**self._read_under(lease), "hashes": ordered[i:i + MISSING_BATCH]})
            except exceptions.NotFound:
                return  # a server without direct transfers: the proxy it is
            self.direct.add(lease, "GET", data.get("downloads") or {})

    def missing_blobs(self, lease: Lease, hashes: set[str], stored: int | None = None) -> set[str]:
        ordered, missing = sorted(hashes), set()
        for i in range(0, len(ordered), MISSING_BATCH):
            ask = {"token": lease.token, "hashes": ordered[i:i + MISSING_BATCH], "direct": True}
            data = self._post(lease.volume_name, "blobs/missing/", ask if stored is None else {**ask, "stored": stored})
            missing.update(data["missing"])
            self.direct.add(lease, "PUT", data.get("uploads") or {})
        return missing

    def _transfer(self, action: Callable[[], None], what: str) -> None:
        """action() retried on transient errors (unreachable, timeout, 5xx of the server or its storage) for
        VOLUMES_STORAGE_RETRY_FOR seconds, the server's value; anything else fails at once."""
        server = self.client.server

        def attempt() -> None:
            try:
                action()
            except requests.Timeout as exc:
                raise exceptions.ServerUnavailable(
                    f"the server at {server} did not answer in time during {what} ({connection_reason(str(exc))})",
                    "timeout") from exc
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # Mid-body: a read timeout surfaces as ConnectionError, a dropped connection as ChunkedEncodingError.
                raise exceptions.ServerUnavailable(
                    f"the connection to the server at {server} broke during {what} ({connection_reason(str(exc))}); "
                    "check that the server runs and the network to it", "unreachable") from exc
            except requests.RequestException as exc:
                raise exceptions.ServerUnavailable(
                    f"{what} through the server at {server} failed: {connection_reason(str(exc))}", "other") from exc

        retrying(attempt, what, notify=self._notify_once)

    def _notify_once(self, line: str) -> None:
        """One line in the job's log per job, not one per blob or thread."""
        if self.notify is not None and not self._notified.is_set():
            self._notified.set()
            self.notify(line)

    def download_blob(self, lease: Lease, digest: str, local_path: str) -> None:
        def fetch() -> None:
            # Direct from storage first on every attempt (the blip may be over); the proxy when that fails.
            if self.direct.download(lease, digest, local_path):
                return
            response = self.client.request(
                "GET", self._mount(lease.volume_name, f"blobs/{digest}"), params=self._read_under(lease),
                headers=self.headers, stream=True,
            )
            with response, open(local_path, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)

        self._transfer(fetch, f"a download of blob {digest}")

    def upload_blob(self, lease: Lease, digest: str, local_path: str, hashed_as: tuple | None = None) -> None:
        def send() -> None:
            # A failed direct upload gives up its URL: later attempts go through the server, which retries too.
            if self.direct.upload(lease, digest, local_path):
                return
            with open(local_path, "rb") as body:
                # requests sends an empty file chunked, which servers that cannot read chunks refuse (411).
                self.client.request(
                    "PUT", self._mount(lease.volume_name, f"blobs/{digest}"), params={"token": lease.token},
                    data=body if os.fstat(body.fileno()).st_size else b"", headers={**self.headers, "Content-Type": "application/octet-stream"},
                )

        self._transfer(send, f"an upload of blob {digest}")

    def commit(self, lease, parent, manifest, counts: ChangeCounts, job_id=None, message="") -> tuple[int, str]:
        manifest.generation = parent + 1
        data = self._post(lease.volume_name, "commit/", {
            "token": lease.token, "parent": parent, "message": message[:300],
            "manifest": json.loads(manifest.to_json()),
        })
        return int(data["generation"]), data["manifest_key"]

    def commit_many(self, prepared: list) -> list[tuple[int, str]]:
        """All of the job's changed volumes in one request: the server commits all or none."""
        volumes = []
        for item in prepared:
            item.manifest.generation = item.lease.generation + 1
            volumes.append({
                "name": item.lease.volume_name, "token": item.lease.token, "parent": item.lease.generation,
                "message": item.message[:300], "manifest": json.loads(item.manifest.to_json()),
            })
        data = self.client.json("POST", f"agent/jobs/{self.job_id}/commit/", json={"volumes": volumes},
                                headers=self.headers)
        return [(int(row["generation"]), row["manifest_key"]) for row in data["committed"]]


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
    return Holder(str(details["holder"]), int(details.get("holder_job") or 0) or None, since, None,
                  waiting=int(details.get("waiting") or 0), readers=int(details.get("readers") or 0))
