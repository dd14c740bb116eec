"""Agents ride out storage and server blips for VOLUMES_STORAGE_RETRY_FOR seconds (the server's value), as
in-process workers do (tests/engine/test_retry.py), and give up at once on errors a retry cannot fix."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import time

import pytest
from django.core.signals import request_started

from tests.servers import PrivateStorage, use_storage
from volumes.exceptions import StorageUnavailable
from volumes.models import ObjectStorage, Volume
from volumes.services.jobs import job_submit
from volumes.storage.factory import clear_store_cache, store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

from .test_agent_worker import agent, no_celery  # noqa: F401  (fixtures)
from .test_direct import SCRIPT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def paused(proc) -> bool:
    """The agent stopped itself at VOLUMES_PAUSE_AT (state T in /proc)."""
    with open(f"/proc/{proc.pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0] == "T"


def test_an_agent_pull_rides_out_a_storage_outage_of_a_few_seconds(agent, workspace, cast, tmp_path, server_logs,
                                                                    settings):
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 30.0}
    storage = PrivateStorage("s3", tmp_path, server_logs)
    try:
        workspace.volume_storage = ObjectStorage.objects.create(workspace=workspace, name="s3 store", kind="s3",
                                                                config=storage.config)
        workspace.save(update_fields=["volume_storage"])
        clear_store_cache()
        first = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
        agent()
        second = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
        # One blob at a time, and a stop after the first: the other two meet the outage.
        proc = agent.start("--cache-dir", str(tmp_path / "another-cache"),
                           environ={"VOLUMES_PAUSE_AT": "pull.after_file:1", "VOLUMES_TRANSFER_THREADS": "1"})
        try:
            deadline = time.monotonic() + 60
            while not paused(proc):
                assert proc.poll() is None and time.monotonic() < deadline, "the agent never reached its pull"
                time.sleep(0.05)
            storage.stop()
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(4)
            storage.start()
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        first.refresh_from_db(), second.refresh_from_db()
        assert first.status == "success", first.log
        assert second.status == "success", f"{second.log}\n{err[-3000:]}"
        assert second.result == {f"f{i}.txt": len(f"file {i}\n") * 1000 for i in range(3)}
        # Said in the job's log, with the server's budget (the agent's own default is 60 s).
        assert re.search(r"storage 's3 store .*' is unavailable \(cannot connect .* during a download of blob \w+; "
                         r"retrying for up to 30 s\n", second.log), second.log
        assert second.log.count("retrying for up to") == 1  # one line, not one per blob
        volume = Volume.objects.get(name="training-data")
        assert (volume.generation, volume.file_count) == (2, 6)
        store, prefix = store_for_storage(volume.storage), volume_prefix("acme", "training-data")
        for i in range(6):
            data = f"file {i}\n".encode() * 1000
            assert store.get_bytes(blob_key(prefix, hashlib.sha256(data).hexdigest())) == data
    finally:
        storage.close()


@pytest.fixture(params=["admin", "writer"])
def claimed(live_server, workspace, cast, request, tmp_path, settings):
    """An HttpRemote of a job claimed from the live server, holding the lease of its volume on S3 (moto), by an
    agent of a workspace admin, or of a member with the agent role (who may not see storage details)."""
    from rest_framework.authtoken.models import Token

    from volumes.agent import ApiClient, HttpRemote, claim
    from volumes.services.workspaces import agent_role_grant

    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_RETRY_FOR": 10.0}
    use_storage(workspace, "s3", request, tmp_path)
    job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    if request.param != "admin":
        agent_role_grant(workspace, cast[request.param])
    client = ApiClient(live_server.url, Token.objects.create(user=cast[request.param]).key, "acme")
    spec = claim(client, "agent-1")
    remote = HttpRemote(client, spec["id"], spec["job_key"])
    lease = remote.acquire("acme", "training-data", "agent-1", wait=5)
    yield remote, lease, request.param
    remote.release(lease)


def test_a_refusal_a_retry_cannot_fix_fails_at_once_with_what_to_do(claimed, tmp_path):
    remote, lease, user = claimed
    storage = Volume.objects.get(name="training-data").storage
    storage.config = {**storage.config, "bucket": "no-such-bucket"}
    storage.save(update_fields=["config"])
    clear_store_cache()
    calls: list[str] = []

    def count(sender, environ, **kwargs) -> None:
        if "/blobs/" in environ["PATH_INFO"]:
            calls.append(environ["REQUEST_METHOD"])

    request_started.connect(count)
    try:
        blob = tmp_path / "blob"
        blob.write_bytes(b"some bytes")
        digest = hashlib.sha256(b"some bytes").hexdigest()
        for transfer in (remote.download_blob, remote.upload_blob):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as info:
                transfer(lease, digest, str(blob))
            # A retried transfer would take the 60 s budget; one second was too tight for a loaded machine (the
            # count of requests below is the exact check).
            assert time.monotonic() - started < 10.0
            assert info.value.reason == "no_bucket" and not info.value.transient
            message = str(info.value)
            if user == "admin":
                assert "'no-such-bucket' does not exist" in message and "Settings > Storage" in message, message
            else:
                assert message == "the volume's storage is unavailable right now; retry later, or tell a workspace admin"
    finally:
        request_started.disconnect(count)
    assert calls == ["GET", "PUT"]  # one request each: not retried


def test_an_agent_says_how_many_blobs_its_base_holds_when_it_asks_which_are_missing(claimed, monkeypatch):
    """The server can then list a small volume's blob folder (one request) instead of looking up each blob."""
    from volumes.engine.remote import DirectRemote

    remote, lease, _ = claimed
    seen = []
    real = DirectRemote.missing_blobs
    monkeypatch.setattr(DirectRemote, "missing_blobs",
                        lambda self, lease, hashes, stored=None: seen.append(stored) or real(self, lease, hashes, stored))
    asked = {hashlib.sha256(str(i).encode()).hexdigest() for i in range(70)}
    assert remote.missing_blobs(lease, asked, stored=7) == asked
    assert remote.missing_blobs(lease, asked) == asked
    assert seen == [7, None]
