"""Build stores from (kind, config), parse storage URLs, and cache one store per configuration.

    file:///abs/path
    s3://bucket/prefix?endpoint_url=...&region=...&access_key=...&secret_key=...
    az://container/prefix?connection_string=...   (or account_name, account_key, endpoint)
    gs://bucket/prefix?endpoint=...&project=...&credentials_json=<percent-encoded key file>

Query values are percent-decoded once ('+' stays '+', so Azure keys survive); encode '&' and '%'.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import threading
from collections import OrderedDict
from urllib.parse import unquote, urlsplit

from .base import ObjectStore

KINDS = ("filesystem", "s3", "azure", "gcs")

# kind -> (required keys, optional keys)
CONFIG_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "filesystem": (("root",), ("prefix",)),
    "s3": (("bucket",), ("prefix", "endpoint_url", "region", "access_key", "secret_key")),
    "azure": (("container",), ("prefix", "connection_string", "account_name", "account_key", "endpoint")),
    "gcs": (("bucket",), ("prefix", "endpoint", "project", "credentials_json")),
}
SECRET_KEYS = frozenset({"secret_key", "connection_string", "account_key", "credentials_json"})

_SCHEMES = {"file": "filesystem", "s3": "s3", "az": "azure", "gs": "gcs"}
_URL_PARAMS = {
    "s3": ("endpoint_url", "region", "access_key", "secret_key"),
    "azure": ("connection_string", "account_name", "account_key", "endpoint"),
    "gcs": ("endpoint", "project", "credentials_json"),
}
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def _clean(kind: str, config: dict) -> dict:
    """Validated config with empty values dropped; ValueError says what is wrong."""
    if kind not in KINDS:
        raise ValueError(f"unknown storage kind {kind!r}; use one of {', '.join(KINDS)}")
    if not isinstance(config, dict):
        raise ValueError(f"the configuration of a {kind} storage must be a dict, not {type(config).__name__}")
    required, optional = CONFIG_KEYS[kind]
    unknown = sorted(set(config) - set(required) - set(optional))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(map(repr, unknown))} for a {kind} storage; "
            f"allowed: {', '.join(required + optional)}"
        )
    clean = {}
    for key, value in config.items():
        if value is None or value == "":
            continue
        if key == "credentials_json" and isinstance(value, dict):
            value = json.dumps(value)
        if not isinstance(value, str):
            raise ValueError(f"setting {key!r} of a {kind} storage must be text")
        if "\x00" in value:
            raise ValueError(f"setting {key!r} of a {kind} storage contains a NUL character")
        clean[key] = value
    missing = [key for key in required if key not in clean]
    if missing:
        raise ValueError(f"a {kind} storage needs {', '.join(map(repr, missing))} in its configuration")
    if kind == "filesystem" and not clean["root"].startswith("/"):
        raise ValueError(f"the root of a filesystem storage must be an absolute path, not {clean['root']!r}")
    for key in ("bucket", "container"):
        if key in clean and not _BUCKET_RE.fullmatch(clean[key]):
            raise ValueError(
                f"{clean[key]!r} is not a valid {key} name: 3-222 lowercase letters, digits, '.', '-' or '_'"
            )
    prefix = clean.get("prefix", "").strip("/")
    if "\\" in prefix or (prefix and any(part in ("", ".", "..") for part in prefix.split("/"))):
        raise ValueError(f"the prefix {clean['prefix']!r} must be a plain relative path (no '..', '.', '//' or '\\')")
    if prefix:
        clean["prefix"] = prefix
    else:
        clean.pop("prefix", None)
    if kind == "s3" and ("access_key" in clean) != ("secret_key" in clean):
        raise ValueError("an s3 storage needs both the access key and the secret key, or neither")
    if kind == "azure" and "connection_string" not in clean and not {"account_name", "account_key"} <= set(clean):
        raise ValueError("an azure storage needs a connection_string, or account_name and account_key")
    if kind == "gcs" and "credentials_json" in clean:
        try:
            json.loads(clean["credentials_json"])
        except ValueError:
            raise ValueError("credentials_json of a gcs storage is not valid JSON; paste the whole key file") from None
    return clean


def _endpoint_text(url: str) -> str:
    """An endpoint URL without user:password@ or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/") if parts.scheme else url.split("?")[0]


def storage_url_label(kind: str, config: dict) -> str:
    """A human name for a storage, e.g. 's3://bucket/prefix at http://127.0.0.1:9000'; never secrets."""
    config = {k: v for k, v in (config or {}).items() if v not in (None, "")}
    prefix = str(config.get("prefix", "")).strip("/")
    tail = f"/{prefix}" if prefix else ""
    if kind == "filesystem":
        return f"file://{config.get('root', '?')}{tail}"
    if kind == "s3":
        label = f"s3://{config.get('bucket', '?')}{tail}"
        return f"{label} at {_endpoint_text(config['endpoint_url'])}" if config.get("endpoint_url") else label
    if kind == "azure":
        label = f"az://{config.get('container', '?')}{tail}"
        endpoint, account = config.get("endpoint"), config.get("account_name")
        if config.get("connection_string"):
            parts = dict(
                item.split("=", 1) for item in str(config["connection_string"]).split(";") if "=" in item
            )
            account = account or parts.get("AccountName")
            endpoint = endpoint or parts.get("BlobEndpoint")
        if endpoint:
            return f"{label} at {_endpoint_text(endpoint)}"
        return f"{label} (account {account})" if account else label
    if kind == "gcs":
        label = f"gs://{config.get('bucket', '?')}{tail}"
        return f"{label} at {_endpoint_text(config['endpoint'])}" if config.get("endpoint") else label
    return f"{kind} storage"


def _require_django_settings() -> None:
    """django-storages reads its defaults from Django settings, so they must be set up."""
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise RuntimeError(
            "volumes.storage needs Django settings (django-storages reads them): set DJANGO_SETTINGS_MODULE "
            "or call django.conf.settings.configure() before building a store"
        )


def build_store(kind: str, config: dict, label: str | None = None) -> ObjectStore:
    """A new store for this configuration (no network call; use .check() to test it)."""
    store = _build_backend_store(kind, config, label)
    fault_spec = os.environ.get("VOLUMES_STORAGE_FAULT")  # reliability tests only; see storage/faults.py
    if fault_spec:
        from . import faults

        return faults.wrap(store, fault_spec)
    return store


def _build_backend_store(kind: str, config: dict, label: str | None) -> ObjectStore:
    clean = _clean(kind, config)
    _require_django_settings()
    label = label or storage_url_label(kind, clean)
    prefix = clean.pop("prefix", "")
    # Each backend module imports its vendor SDK only when a store of that kind is built.
    if kind == "filesystem":
        from .filesystem import FileSystemStore

        return FileSystemStore(clean["root"], prefix=prefix, label=label)
    if kind == "s3":
        from .s3 import S3Store

        return S3Store(prefix=prefix, label=label, **clean)
    if kind == "azure":
        from .azure import AzureStore

        return AzureStore(prefix=prefix, label=label, **clean)
    from .gcs import GCSStore

    return GCSStore(prefix=prefix, label=label, **clean)


def parse_storage_url(url: str) -> tuple[str, dict]:
    """('s3', {'bucket': ..., ...}) from a storage URL; ValueError for anything else."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"{url!r} is not a storage URL; use file:///abs/path, s3://bucket/prefix, "
            "az://container/prefix or gs://bucket/prefix"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ValueError(f"unknown storage URL scheme {scheme!r} in {url.split('?')[0]!r}; use file, s3, az or gs")
    if parts.fragment:
        raise ValueError("a storage URL may not have a '#fragment'")
    if kind == "filesystem":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"{url!r} is not an absolute file URL; write file:///absolute/path (three slashes)")
        if parts.query:
            raise ValueError("a file:// storage URL takes no query parameters")
        root = posixpath.normpath(unquote(parts.path))
        if root.startswith("//"):
            root = "/" + root.lstrip("/")
        return kind, _clean(kind, {"root": root})
    bucket = parts.netloc
    what = "container" if kind == "azure" else "bucket"
    if not bucket:
        raise ValueError(f"{url.split('?')[0]!r} names no {what}; write {scheme}://{what.upper()}/prefix")
    if "@" in bucket or ":" in bucket:
        raise ValueError(f"put credentials and endpoints of a {scheme}:// URL into query parameters, not the host")
    params: dict[str, str] = {}
    if parts.query:
        for item in parts.query.split("&"):
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = unquote(name)
            if name not in _URL_PARAMS[kind]:
                raise ValueError(
                    f"unknown parameter {name!r} in a {scheme}:// URL; allowed: {', '.join(_URL_PARAMS[kind])}"
                )
            if name in params:
                raise ValueError(f"parameter {name!r} appears twice in the storage URL")
            params[name] = unquote(value)
    config = {what: bucket, **params}
    prefix = unquote(parts.path).strip("/")
    if prefix:
        config["prefix"] = prefix
    return kind, _clean(kind, config)


_cache: OrderedDict[tuple[int, str, str, str], ObjectStore] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 64


def store_for_storage(obj) -> ObjectStore:
    """The store of a storage row (anything with .kind, .config, .name), cached per process.

    Keyed by kind, the configuration and the name (the name is in the label), so editing a
    storage's settings builds a new store with a new client.
    """
    kind, config, name = obj.kind, dict(obj.config or {}), str(getattr(obj, "name", "") or "")
    # The pid too: a forked worker (Celery prefork) must not share its parent's HTTP connections.
    cache_key = (os.getpid(), kind, json.dumps(config, sort_keys=True, default=str), name)
    with _cache_lock:
        store = _cache.get(cache_key)
        if store is not None:
            _cache.move_to_end(cache_key)
            return store
    label = storage_url_label(kind, config)
    store = build_store(kind, config, label=f"{name} ({label})" if name else label)
    with _cache_lock:
        store = _cache.setdefault(cache_key, store)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return store


def store_for_volume(volume) -> tuple[ObjectStore, str]:
    """The one way from a volume (anything with .storage, .workspace_id, .name) to its objects: the
    store of its storage and the prefix every key of the volume starts with."""
    from .keys import volume_prefix

    return store_for_storage(volume.storage), volume_prefix(volume.workspace_id, volume.name)


def clear_store_cache() -> None:
    """Forget every cached store (tests; after rotating credentials)."""
    with _cache_lock:
        _cache.clear()
