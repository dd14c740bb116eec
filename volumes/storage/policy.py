"""What a storage may point at on this installation, and the check run before one is saved.

Storage settings are typed by workspace admins, but the server does the connecting, so they are
a way to probe the server's own disk and network. Two rules keep them from being one:

- A filesystem root chosen by a workspace admin lies inside `<STORAGE_BASE_DIR>/<workspace id>/`.
  Superusers and the command line (the operator) may use any absolute folder.
- An endpoint (S3 endpoint URL, Azure blob endpoint, GCS endpoint and token URI) may not resolve
  to a loopback, link-local or unspecified address unless `STORAGE_ALLOWED_HOSTS` lists the host
  name, the address or a network containing it. This holds for everyone, superusers included.

`storage_probe` then proves a storage works (reach, credentials, bucket, write, read, delete) and
answers "works" or the step that failed, in words that never tell what else exists on the server.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import socket
from urllib.parse import urlsplit

from .. import conf
from ..exceptions import StorageCheckFailed, StorageRefused, StorageUnavailable, VolumesError
from .base import ObjectStore

logger = logging.getLogger(__name__)

_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
# Fields that name where a storage lives: changing one while volumes live there would strand them.
LOCATION_KEYS = {"filesystem": ("root", "prefix"), "s3": ("bucket", "prefix"), "azure": ("container", "prefix"),
                 "gcs": ("bucket", "prefix")}


def location(kind: str, config: dict) -> tuple:
    """(kind, bucket/container/root, prefix): where a storage's objects are."""
    return (kind, *(str((config or {}).get(key) or "").strip("/") for key in LOCATION_KEYS.get(kind, ())))


# --- filesystem roots -----------------------------------------------------------------------------


def workspace_base(workspace_id: str) -> str:
    return os.path.join(os.path.normpath(str(conf.storage_base_dir().absolute())), workspace_id)


def check_filesystem_root(root: str, workspace_id: str, unconfined: bool) -> None:
    """StorageRefused unless `root` lies inside the workspace's folder under the base (or unconfined)."""
    if unconfined:
        return
    normal = os.path.normpath(root)
    base = workspace_base(workspace_id)
    if normal != root.rstrip("/") and normal != root:
        raise StorageRefused(f"write the folder without '.', '..' or '//' segments, e.g. {base}/volumes")
    if normal != base and not normal.startswith(base + os.sep):
        raise StorageRefused(
            f"a filesystem storage of this workspace must be the folder {base} or a folder inside it; "
            "only a superuser (or the server's command line) may choose another folder"
        )


# --- endpoints ------------------------------------------------------------------------------------


def _allowed_entries() -> tuple[set[str], list]:
    names: set[str] = set()
    networks: list = []
    raw = conf.get("STORAGE_ALLOWED_HOSTS") or ()
    if isinstance(raw, str):
        raw = raw.split(",")
    for entry in raw:
        entry = str(entry).strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


def _forbidden(address: ipaddress._BaseAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_loopback or address.is_link_local or address.is_unspecified


def check_endpoint(url: str, what: str = "endpoint") -> None:
    """StorageRefused if `url`'s host is (or resolves to) a loopback or link-local address not allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise StorageRefused(f"the {what} must be an http:// or https:// URL")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise StorageRefused(f"the {what} names no host")
    names, networks = _allowed_entries()
    if host in names:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise StorageRefused(f"the {what} has an invalid port") from None
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return  # cannot resolve: the connection check will say the endpoint is unreachable
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    for address in addresses:
        if _forbidden(address) and not any(address in network for network in networks):
            raise StorageRefused(
                f"the {what} {host!r} is a loopback or link-local address, which storages may not use on this "
                "installation; the operator can allow it with VOLUMES_STORAGE_ALLOWED_HOSTS"
            )


def store_endpoints(store: ObjectStore) -> list[tuple[str, str]]:
    """(url, what) of every address a store would connect to."""
    inner = getattr(store, "inner", store)  # fault injection wraps stores in tests
    kind = inner.kind
    if kind == "s3":
        return [(inner.client.meta.endpoint_url, "endpoint URL")]
    if kind == "azure":
        urls = [(inner.client.primary_endpoint, "blob endpoint")]
        try:
            urls.append((inner.client.secondary_endpoint, "secondary blob endpoint"))
        except ValueError:  # none configured
            pass
        return urls
    if kind == "gcs":
        urls = [(inner.client._connection.API_BASE_URL, "endpoint")]
        token_uri = getattr(inner.client._credentials, "_token_uri", None)
        if token_uri:
            urls.append((token_uri, "token_uri of the service account key"))
        return urls
    return []


def check_storage_policy(kind: str, config: dict, workspace_id: str, unconfined: bool) -> ObjectStore:
    """The store for these settings, or StorageRefused naming the rule they break (no network I/O
    beyond resolving host names)."""
    from .factory import _clean, build_store

    try:
        clean = _clean(kind, config)
    except ValueError as exc:
        raise StorageRefused(f"{exc}") from None
    if kind == "filesystem":
        check_filesystem_root(clean["root"], workspace_id, unconfined)
    if kind == "azure" and clean.get("account_name") and not _ACCOUNT_RE.fullmatch(clean["account_name"]):
        raise StorageRefused("an Azure account name is 3-24 lowercase letters and digits")
    if not unconfined:
        # The server's own cloud identity (environment, instance role) is the operator's, not a workspace's.
        if kind == "s3" and not clean.get("access_key"):
            raise StorageRefused("give the access key and secret key of the bucket; only a superuser may use "
                                 "the server's own AWS credentials")
        if kind == "gcs" and not clean.get("credentials_json") and not clean.get("endpoint"):
            raise StorageRefused("paste a service account key; only a superuser may use the server's own "
                                 "Google credentials")
    try:
        store = build_store(kind, clean)
    except ValueError as exc:
        raise StorageRefused(f"{exc}") from None
    except VolumesError as exc:
        raise StorageRefused(exc.message) from None
    except Exception as exc:  # an SDK refusing the settings (a malformed connection string...)
        logger.warning("building a %s storage failed: %r", kind, exc)
        raise StorageRefused(f"the {kind} settings are not valid ({type(exc).__name__})") from None
    for url, what in store_endpoints(store):
        check_endpoint(url, what)
    return store


# --- the check before saving ----------------------------------------------------------------------

_STEP_TEXT = {
    "reach": "listing the storage",
    "write": "writing a test object",
    "read": "reading the test object back",
    "delete": "deleting the test object",
}


def _failure(step: str, exc: StorageUnavailable, kind: str, config: dict) -> StorageCheckFailed:
    """A message naming the step and the kind of failure, without the server's own words (paths, ports...)."""
    what = "container" if kind == "azure" else "bucket"
    if kind == "filesystem":
        cause = ("the server may not use that folder" if exc.reason == "denied"
                 else "the folder cannot be created or used")
    elif exc.reason in ("unreachable", "timeout"):
        cause = "the endpoint cannot be reached (check the endpoint URL and that the server is running)"
    elif exc.reason == "denied":
        cause = "the credentials were refused (check the keys and their permissions)"
    elif exc.reason == "no_bucket":
        name = config.get("container" if kind == "azure" else "bucket")
        cause = f"the {what} {name!r} does not exist; create it first"
    elif exc.reason == "server_error":
        cause = "the storage answered with a server error; try again later"
    else:
        cause = "the storage refused the request"
    logger.warning("storage check failed while %s: %s", _STEP_TEXT[step], exc.detail)
    return StorageCheckFailed(f"{_STEP_TEXT[step].capitalize()} failed: {cause}.", step=step)


def storage_probe(kind: str, config: dict, workspace_id: str, unconfined: bool) -> None:
    """Prove a storage works before it is saved: reachable, credentials accepted, bucket exists, and a
    test object can be written, read back and deleted. StorageRefused or StorageCheckFailed otherwise."""
    store = check_storage_policy(kind, config, workspace_id, unconfined)
    probe = f".volumes-check/{secrets.token_hex(8)}"
    step = "reach"
    try:
        for _ in store.list(".volumes-check/"):
            break
        step = "write"
        store.put_bytes(probe, b"ok")
        step = "read"
        if store.get_bytes(probe) != b"ok":
            raise StorageUnavailable(store.label, "a test object read back different bytes")
        step = "delete"
        store.delete(probe)
        if store.exists(probe):
            raise StorageUnavailable(store.label, "a deleted test object is still there")
    except StorageUnavailable as exc:
        raise _failure(step, exc, kind, config) from None
    except VolumesError as exc:  # BlobMissing of the probe we just wrote, InvalidPath...
        logger.warning("storage check failed while %s: %s", _STEP_TEXT[step], exc)
        raise StorageCheckFailed(f"{_STEP_TEXT[step].capitalize()} failed: the storage did not keep the "
                                 "test object.", step=step) from None
    except Exception as exc:  # an SDK error the adapter did not translate: still name the step only
        logger.warning("storage check failed while %s: %r", _STEP_TEXT[step], exc)
        raise StorageCheckFailed(f"{_STEP_TEXT[step].capitalize()} failed ({type(exc).__name__}).",
                                 step=step) from None
