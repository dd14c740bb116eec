"""Agents move blobs straight to and from storage with presigned URLs (S3 on moto, Azure on Azurite),
through the server's proxy where the storage cannot sign (filesystem, the anonymous GCS emulator) or
the operator says so. (A forged direct upload refused at commit: tests/services/test_agent.py.)"""
from __future__ import annotations

import hashlib

import pytest

from tests.servers import use_storage
from volumes.models import Job, Volume
from volumes.ops.metrics import AGENT_PROXY_BYTES
from volumes.permissions import set_share
from volumes.services.jobs import job_submit
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

from .test_agent_worker import agent, no_celery  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Reads what the volume holds, then adds three files.
SCRIPT = """# volume: training-data state
import os

def main():
    names = sorted(os.listdir("state"))
    seen = {name: open(os.path.join("state", name)).read() for name in names}
    for i in range(len(names), len(names) + 3):
        with open(os.path.join("state", f"f{i}.txt"), "w") as fh:
            fh.write(f"file {i}\\n" * 1000)
    return {name: len(text) for name, text in seen.items()}
"""


def proxied() -> float:
    return sum(AGENT_PROXY_BYTES.labels(d)._value.get() for d in ("upload", "download"))


def run_twice(agent, workspace, cast, tmp_path) -> tuple[Job, Job]:
    """A job that writes three files, then one on an agent with an empty cache that reads them (a pull)."""
    first = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    agent()
    second = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    agent("--cache-dir", str(tmp_path / "another-cache"))
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, first.result) == ("success", {}), first.log
    assert second.status == "success", second.log
    assert second.result == {f"f{i}.txt": len(f"file {i}\n") * 1000 for i in range(3)}
    assert second.mounts.get().files_pulled == 3
    return first, second


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_an_agent_pulls_and_pushes_straight_to_storage(kind, agent, workspace, cast, request, tmp_path):
    use_storage(workspace, kind, request, tmp_path)
    before = proxied()
    run_twice(agent, workspace, cast, tmp_path)
    assert proxied() == before  # not one blob byte went through the server
    volume = Volume.objects.get(name="training-data")
    assert (volume.generation, volume.file_count) == (2, 6)
    store, prefix = store_for_storage(volume.storage), volume_prefix("acme", "training-data")
    assert not list(store.list(prefix + "incoming/"))  # every upload was checked and moved under blobs/
    assert store.get_bytes(blob_key(prefix, hashlib.sha256(b"file 4\n" * 1000).hexdigest())) == b"file 4\n" * 1000


@pytest.mark.parametrize("kind, forced", [("filesystem", ""), ("gcs", ""), ("s3", "s3"), ("azure", "azure store")])
def test_an_agent_goes_through_the_proxy_where_storage_cannot_sign_or_the_operator_says_so(
        kind, forced, agent, workspace, cast, request, tmp_path, settings):
    use_storage(workspace, kind, request, tmp_path)
    settings.VOLUMES = {**settings.VOLUMES, "AGENT_PROXY_STORAGES": [forced] if forced else []}
    before = proxied()
    run_twice(agent, workspace, cast, tmp_path)
    assert proxied() - before == 9 * len("file 0\n") * 1000  # three files up, down, and three more up
    assert Volume.objects.get(name="training-data").file_count == 6




def test_an_agent_asks_the_server_to_sign_only_the_blobs_it_downloads(agent, workspace, cast, request, tmp_path,
                                                                      monkeypatch):
    """A pull after another worker's change signs the files that change brought, not every file of the volume
    (100,000 presigned URLs a pull on a big volume, for a one-file change)."""
    from volumes.services import direct

    use_storage(workspace, "s3", request, tmp_path)
    signed = []
    download_urls = direct.download_urls
    monkeypatch.setattr(direct, "download_urls", lambda volume, hashes: signed.append(len(hashes))
                        or download_urls(volume, hashes))
    run_twice(agent, workspace, cast, tmp_path)  # the second job, on another cache, added three files
    signed.clear()
    before = proxied()
    third = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    agent()  # the first cache holds generation 1: three of the six files
    third.refresh_from_db()
    assert third.status == "success", third.log
    assert len(third.result) == 6 and third.mounts.get().files_pulled == 3
    assert sum(signed) == 3, f"{signed} URLs signed for three downloads"
    assert proxied() == before


def test_a_read_only_mount_pulls_straight_from_storage_under_its_pin(agent, workspace, cast, request, tmp_path):
    use_storage(workspace, "s3", request, tmp_path)
    job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    agent()
    set_share(Volume.objects.get(name="training-data"), cast["reader"], "read")
    before = proxied()
    reads = SCRIPT.replace("range(len(names), len(names) + 3)", "range(0)")  # a read-only mount
    as_reader = job_submit(workspace, cast["reader"], "python", reads, enqueue=False)
    agent("--cache-dir", str(tmp_path / "another-cache"))
    as_reader.refresh_from_db()
    assert as_reader.status == "success", as_reader.log
    assert as_reader.result == {f"f{i}.txt": len(f"file {i}\n") * 1000 for i in range(3)}
    mount = as_reader.mounts.get()
    assert (mount.mode, mount.files_pulled) == ("ro", 3)
    assert proxied() == before
    assert Volume.objects.get(name="training-data").generation == 1


def test_an_agent_that_cannot_reach_storage_falls_back_to_the_proxy_and_says_so_once(agent, workspace, cast, request,
                                                                                      tmp_path, live_server):
    """The agent's requests to storage go through a proxy that is not there (its requests to the server do not):
    every direct transfer fails with a network error and goes through the server instead."""
    use_storage(workspace, "s3", request, tmp_path)
    server = live_server.url.split("//", 1)[1]
    unreachable = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
                   "NO_PROXY": server, "no_proxy": server}
    before = proxied()
    first = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    pushed = agent("-v", "2", environ=unreachable)
    second = job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    pulled = agent("--cache-dir", str(tmp_path / "another-cache"), environ=unreachable)
    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == second.status == "success", second.log
    assert second.result == {f"f{i}.txt": len(f"file {i}\n") * 1000 for i in range(3)}
    assert proxied() - before == 9 * len("file 0\n") * 1000  # all of it through the server
    for run in (pushed, pulled):
        assert run.stderr.count("a direct transfer to or from storage failed") == 1, run.stderr[-2000:]
        assert "Signature" not in run.stderr  # the URLs (their query is the credential) are not logged
