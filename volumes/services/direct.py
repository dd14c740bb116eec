"""Direct blob transfers for agent workers: short-lived presigned URLs, and the check of what agents
uploaded with them before a commit may use it.

The agent endpoints hand these URLs out only to the agent that claimed the job, only while the job
holds the volume's lease, only for keys under that volume's prefix, and valid for PRESIGN_SECONDS.
Where a storage cannot sign (filesystem storage, GCS without a service account key), or the
operator forces it (PRESIGN_SECONDS 0, or the storage's name or kind in AGENT_PROXY_STORAGES), no URL
is given and agents move the bytes through the server as before.

Downloads are GETs of the blob itself. Uploads never go to a blob's key: a presigned PUT writes
`<prefix>incoming/<sha256>` (create-only), and a commit that names that hash first reads the object
back, checks its size and SHA-256, and only then writes it under `blobs/<sha256>`. Unchecked bytes so
never sit under a blob's name, where every later push, upload or restore would trust them (none of
the local test servers verifies a signed checksum: moto ignores it, Azure and GCS take none). A
forged upload is deleted and the commit refused. GC removes incoming objects older than GC_GRACE.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from .. import conf
from ..exceptions import BlobMissing, IntegrityError
from ..models import Volume
from ..storage.base import MULTIPART_THRESHOLD
from ..storage.factory import store_for_volume
from ..storage.keys import blob_key

INCOMING = "incoming/"


def enabled(volume: Volume) -> bool:
    """Whether agents may get URLs for this volume's storage (the storage may still be unable to sign)."""
    if float(conf.get("PRESIGN_SECONDS") or 0) <= 0:
        return False
    forced = {str(name).strip().lower() for name in conf.get("AGENT_PROXY_STORAGES") or ()}
    storage = volume.storage
    return not ({"*", storage.kind.lower(), storage.name.lower()} & forced)


def _expires() -> int:
    return max(1, int(float(conf.get("PRESIGN_SECONDS"))))


def incoming_key(prefix: str, digest: str) -> str:
    blob_key(prefix, digest)  # checks both
    return f"{prefix}{INCOMING}{digest}"


def download_urls(volume: Volume, hashes: set[str]) -> dict[str, dict]:
    """{hash: presigned GET} for blobs of the volume; {} when the proxy must be used."""
    if not hashes or not enabled(volume):
        return {}
    (store, prefix), expires = store_for_volume(volume), _expires()
    urls = {}
    for digest in sorted(hashes):
        presigned = store.presign_get(blob_key(prefix, digest), expires)
        if presigned is None:
            return {}
        urls[digest] = presigned.as_dict()
    return urls


def upload_urls(volume: Volume, hashes: set[str]) -> dict[str, dict]:
    """{hash: presigned create-only PUT of the hash's incoming key}; {} when the proxy must be used."""
    if not hashes or not enabled(volume):
        return {}
    (store, prefix), expires = store_for_volume(volume), _expires()
    urls = {}
    for digest in sorted(hashes):
        presigned = store.presign_put(incoming_key(prefix, digest), None, digest, expires)
        if presigned is None:
            return {}
        urls[digest] = presigned.as_dict()
    return urls


def accept_uploads(volume: Volume, hashes: set[str]) -> dict[str, int]:
    """Check the direct uploads among `hashes` (blobs the volume lacks) and store each under its blob key.

    Returns {hash: size} of the blobs stored. IntegrityError, naming one, when an upload's bytes do not
    hash to its name: nothing may be committed then. Every incoming object of the volume is deleted
    after (one listing and batch delete), so a forged one is uploaded again."""
    if not hashes:
        return {}
    store, prefix = store_for_volume(volume)

    def accept(digest: str) -> tuple[str, str | None, int]:
        """(digest, actual hash or None when not uploaded, size); stored under its blob key when they match."""
        source = incoming_key(prefix, digest)
        try:
            chunks = store.open_read(source)  # BlobMissing before the first chunk
        except BlobMissing:
            return digest, None, 0
        sha, size, held = hashlib.sha256(), 0, []
        for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
            if held is not None:
                held.append(chunk)
                if size > MULTIPART_THRESHOLD:
                    held = None  # too big to hold: copied inside the storage instead
        if sha.hexdigest() == digest:
            if held is not None:  # small: written from memory, one request
                store.put_bytes(blob_key(prefix, digest), b"".join(held), create_only=True)
            else:  # big: copied inside the storage
                store.copy(source, blob_key(prefix, digest))
        return digest, sha.hexdigest(), size

    with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
        results = list(pool.map(accept, sorted(hashes)))
    if any(actual is not None for _, actual, _ in results):
        store.delete_prefix(prefix + INCOMING)
    forged = [(digest, actual) for digest, actual, _ in results if actual is not None and actual != digest]
    if forged:
        digest, actual = forged[0]
        raise IntegrityError(
            f"{len(forged)} files uploaded directly to storage do not match their hashes (e.g. blob {digest}: its "
            f"bytes hash to {actual}); they were deleted and nothing was committed; upload them again"
        )
    return {digest: size for digest, actual, size in results if actual == digest}
