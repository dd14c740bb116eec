"""Object storage for volumes: one ObjectStore interface over filesystem, S3, Azure Blob and GCS.

    from volumes.storage import build_store, parse_storage_url
    store = build_store(*parse_storage_url("s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000"))
    store.put_bytes("a/b", b"data"); store.get_bytes("a/b")

Errors: BlobMissing for an absent key, StorageUnavailable for everything else.
"""
from .base import ObjectStore
from .factory import (
    KINDS,
    build_store,
    clear_store_cache,
    parse_storage_url,
    storage_url_label,
    store_for_storage,
    store_for_volume,
)
from .keys import blob_key, manifest_key, safe_relpath, volume_prefix

__all__ = [
    "KINDS",
    "ObjectStore",
    "blob_key",
    "build_store",
    "clear_store_cache",
    "manifest_key",
    "parse_storage_url",
    "safe_relpath",
    "storage_url_label",
    "store_for_storage",
    "store_for_volume",
    "volume_prefix",
]
