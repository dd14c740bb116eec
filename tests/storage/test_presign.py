"""Presigned requests, over the four kinds of storage on their real servers.

filesystem storage cannot sign, nor can the anonymous GCS emulator (signing needs a service account
key): both answer None, and agents go through the server's proxy. moto_server accepts any signature,
expired or not, and neither checks the signed checksum: the server verifies every direct upload
before a commit may use it (services/direct.py). Azurite checks SAS tokens.
"""
from __future__ import annotations

import hashlib
import time

import pytest
import requests

from tests.servers import backend_config, make_store

DATA = b"presigned bytes\x00\xff" * 100
SHA = hashlib.sha256(DATA).hexdigest()
SIGNS = {"filesystem": False, "s3": True, "azure": True, "gcs": False}


@pytest.fixture
def store(storage_backend):
    kind, config = storage_backend
    return make_store(kind, {**config, "prefix": "tenant"} if kind != "filesystem" else config)


def _send(presigned, data: bytes | None = None) -> requests.Response:
    return requests.request(presigned.method, presigned.url, headers=presigned.headers, data=data, timeout=10)


def test_a_presigned_get_downloads_the_bytes(store):
    store.put_bytes("a/blob", DATA)
    presigned = store.presign_get("a/blob", 60)
    if not SIGNS[store.kind]:
        assert presigned is None
        return
    answer = _send(presigned)
    assert answer.status_code == 200 and answer.content == DATA
    assert "tenant/a/blob" in presigned.url  # the store's prefix is part of the key it signed


def test_a_presigned_put_uploads_the_bytes_once(store):
    presigned = store.presign_put("a/new", len(DATA), SHA, 60)
    if not SIGNS[store.kind]:
        assert presigned is None
        return
    assert presigned.method == "PUT"
    assert _send(presigned, DATA).status_code in (200, 201)
    assert store.get_bytes("a/new") == DATA
    # Create-only: the same URL cannot replace what it wrote.
    assert _send(presigned, b"other bytes").status_code in (403, 412)  # Azure: create permission only
    assert store.get_bytes("a/new") == DATA


def test_a_put_for_one_key_writes_no_other(store):
    presigned = store.presign_put("a/one", len(DATA), SHA, 60)
    if presigned is None:
        return
    answer = requests.put(presigned.url.replace("a/one", "a/two"), headers=presigned.headers, data=DATA, timeout=10)
    if store.kind == "azure":  # Azurite checks the SAS signature over the blob's name
        assert answer.status_code == 403
        assert not store.exists("a/two")


def test_an_expired_or_tampered_url_is_refused_by_azurite(request, tmp_path):
    """Only Azurite checks signatures and expiry among the local servers (see the module doc)."""
    store = make_store("azure", backend_config("azure", request, tmp_path))
    store.put_bytes("a/blob", DATA)
    good = store.presign_get("a/blob", 60)
    assert _send(good).status_code == 200
    tampered = good.url.replace("sp=r", "sp=rw")
    assert requests.get(tampered, timeout=10).status_code == 403
    expiring = store.presign_get("a/blob", 1)
    time.sleep(2.5)
    assert _send(expiring).status_code == 403


def test_a_gcs_store_with_a_service_account_key_signs_v4_urls(request, tmp_path):
    """The tests' GCS store is anonymous (None above); with a key it signs, offline. The emulator serves
    the signed URLs but checks neither signature nor x-goog-if-generation-match, so this proves the
    URLs' shape and that the key's store would hand them out, not that GCS enforces them."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key = {"type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": pem,
           "client_email": "agent-urls@test.iam.gserviceaccount.com", "client_id": "1",
           "token_uri": "https://oauth2.googleapis.com/token"}
    config = backend_config("gcs", request, tmp_path)
    anonymous = make_store("gcs", config)
    anonymous.put_bytes("a/blob", DATA)
    signer = make_store("gcs", {**config, "credentials_json": json.dumps(key)})
    get = signer.presign_get("a/blob", 60)
    assert "X-Goog-Signature=" in get.url and "/a/blob?" in get.url
    assert _send(get).content == DATA
    put = signer.presign_put("a/new", len(DATA), SHA, 60)
    assert put.headers == {"x-goog-if-generation-match": "0"}
    assert _send(put, DATA).ok and anonymous.get_bytes("a/new") == DATA
