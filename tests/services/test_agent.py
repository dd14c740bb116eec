"""The agent service's commit (services/agent.py): what an agent's manifest names is checked before it
goes through the one commit path; a forged direct upload is refused and nothing is committed."""
from __future__ import annotations

import hashlib

import pytest
import requests

from tests.agent.test_direct import SCRIPT
from tests.servers import use_storage
from volumes.exceptions import IntegrityError
from volumes.models import Volume
from volumes.services import agent as agent_service
from volumes.services.direct import incoming_key
from volumes.services.jobs import job_submit
from volumes.storage.factory import store_for_storage
from volumes.storage.keys import blob_key, volume_prefix

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_a_forged_direct_upload_is_refused_at_commit_and_nothing_is_committed(kind, workspace, cast, request,
                                                                               tmp_path):
    use_storage(workspace, kind, request, tmp_path)
    job_submit(workspace, cast["owner"], "python", SCRIPT, enqueue=False)
    claimed = agent_service.agent_claim_next(workspace, cast["admin"], "forger")
    job = claimed.job
    lease = agent_service.agent_acquire(job, "training-data", "forger", 0)
    real = b"the real bytes\n"
    digest = hashlib.sha256(real).hexdigest()
    assert agent_service.agent_missing(job, "training-data", lease.token, [digest]) == {digest}
    urls = agent_service.agent_blob_urls(job, "training-data", lease.token, [digest], upload=True)
    put = urls[digest]
    assert requests.put(put["url"], headers=put["headers"], data=b"other bytes, same length", timeout=10).ok
    manifest = ('{"format": 1, "generation": 1, "entries": [{"path": "a.txt", "type": "file", "size": %d, '
                '"hash": "%s", "mode": 420, "mtime_ns": 0, "gen": 1}]}' % (len(real), digest)).encode()
    with pytest.raises(IntegrityError, match=f"do not match their hashes.*{digest}.*nothing was committed"):
        agent_service.agent_commit(job, "training-data", lease.token, 0, manifest)
    volume = Volume.objects.get(name="training-data")
    store, prefix = store_for_storage(volume.storage), volume_prefix("acme", "training-data")
    assert volume.generation == 0
    assert not store.exists(blob_key(prefix, digest)) and not store.exists(incoming_key(prefix, digest))
    # Uploaded again, honestly, the same commit goes through.
    urls = agent_service.agent_blob_urls(job, "training-data", lease.token, [digest], upload=True)
    assert requests.put(urls[digest]["url"], headers=urls[digest]["headers"], data=real, timeout=10).ok
    assert agent_service.agent_commit(job, "training-data", lease.token, 0, manifest)[0] == 1
    assert store.get_bytes(blob_key(prefix, digest)) == real
