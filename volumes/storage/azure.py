"""Azure Blob Storage (or Azurite) over the ContainerClient of django-storages' AzureStorage, built
here with short timeouts and one quick retry."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..exceptions import VolumesError
from .base import (
    CONNECT_TIMEOUT,
    MULTIPART_THRESHOLD,
    PART_CONCURRENCY,
    POOL_SIZE,
    READ_TIMEOUT,
    BackendStore,
    Presigned,
    VerifyingReader,
    check_prefix,
    check_range,
    network_reason,
    sha256_of_file,
    short_error,
    removed_on_failure,
)


class AzureStore(BackendStore):
    """Azure Blob Storage (or Azurite) through storages.backends.azure_storage.AzureStorage."""

    kind = "azure"

    def __init__(
        self,
        container: str,
        prefix: str = "",
        connection_string: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        endpoint: str | None = None,
        *,
        label: str,
    ) -> None:
        import requests
        from azure.storage.blob import BlobServiceClient, LinearRetry
        from storages.backends.azure_storage import AzureStorage

        super().__init__(prefix, label)
        self.container_name = container
        self.storage = AzureStorage(
            azure_container=container,
            location=self.prefix.rstrip("/"),
            connection_string=connection_string or None,
            account_name=account_name or None,
            account_key=account_key or None,
            overwrite_files=True,
            timeout=int(READ_TIMEOUT),
            upload_max_conn=PART_CONCURRENCY,
        )
        # Our own pool (bigger than requests' 10) without urllib3 retries: azure-core retries.
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        options = {
            "connection_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            # The SDK default waits 15 s between retries: one quick retry instead.
            "retry_policy": LinearRetry(backoff=0.5, retry_total=1, random_jitter_range=0.5),
            "max_single_put_size": MULTIPART_THRESHOLD,  # larger: block upload, committed at once
            "max_block_size": 4 * 1024 * 1024,
            "max_single_get_size": MULTIPART_THRESHOLD,
            "max_chunk_get_size": 4 * 1024 * 1024,
            "session": session,
        }
        # AzureStorage ignores client options for connection strings, so build the client here.
        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        else:  # an account name and key: factory.build_store checked that one of the two is given
            url = endpoint or f"https://{account_name}.blob.core.windows.net"
            service = BlobServiceClient(url, credential={"account_name": account_name, "account_key": account_key},
                                        **options)
        self.storage._service_client = service
        self.client = self.storage.client  # the ContainerClient; thread-safe

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if isinstance(exc, HttpResponseError):
            code = getattr(exc, "error_code", None) or ""
            code = str(getattr(code, "value", code))
            if code == "ContainerNotFound":
                return self.unavailable(f"container {self.container_name!r} does not exist", "no_bucket")
            if key is not None and (code == "BlobNotFound" or isinstance(exc, ResourceNotFoundError)):
                return self.missing(key)
            if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
                return self.unavailable(
                    f"access was refused ({code or exc.status_code}); check the account key or connection string",
                    "denied",
                )
            status = exc.status_code or 0
            return self.unavailable(f"{exc.status_code} {code or exc.reason}",
                                    "server_error" if status >= 500 or status in (408, 429) else "other")
        if isinstance(exc, ServiceRequestError):
            return self.unavailable(f"cannot connect to {self._endpoint()} ({network_reason(exc)})", "unreachable")
        if isinstance(exc, ServiceResponseError):
            return self.unavailable(f"no answer from {self._endpoint()} ({network_reason(exc)})", "timeout")
        return self.unavailable(short_error(exc))

    def _endpoint(self) -> str:
        return self.client.url.split("?")[0].rsplit("/", 1)[0]

    def _blob(self, key: str):
        return self.client.get_blob_client(self._name(key))

    def presign_get(self, key: str, expires: int) -> Presigned | None:
        return self._sas(key, expires, "r", "GET", {})

    def presign_put(self, key: str, size: int | None, sha256: str, expires: int) -> Presigned | None:
        # Create permission only: the SAS writes a new blob and never replaces one. Azure takes no
        # SHA-256, so the bytes are verified by whoever accepts the blob.
        return self._sas(key, expires, "c", "PUT", {"x-ms-blob-type": "BlockBlob", "If-None-Match": "*"})

    def _sas(self, key: str, expires: int, permission: str, method: str, headers: dict) -> Presigned | None:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        credential = self.client.credential
        account_key = getattr(credential, "account_key", None)
        if not account_key:
            return None  # no shared key (a token credential): nothing to sign with
        blob = self._blob(key)
        token = generate_blob_sas(
            account_name=credential.account_name, container_name=self.container_name, blob_name=blob.blob_name,
            account_key=account_key, permission=BlobSasPermissions.from_string(permission),
            expiry=datetime.now(timezone.utc) + timedelta(seconds=int(expires)),
        )
        return Presigned(method, f"{blob.url}?{token}", headers)

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        from azure.core.exceptions import ResourceExistsError

        blob, source = self._blob(key), self._local_source(local_path)
        with open(source, "rb") as f, self._errors():
            size = os.fstat(f.fileno()).st_size
            # Read once, hashed as it streams: block uploads commit only after the last block was read.
            reader = VerifyingReader(f, size, sha256, key, source)
            try:
                blob.upload_blob(reader, length=size, overwrite=not create_only, max_concurrency=PART_CONCURRENCY)
            except ResourceExistsError:  # If-None-Match: * refused: the blob exists
                if create_only:
                    return False
                raise
        return True

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        from azure.core.exceptions import ResourceExistsError

        blob = self._blob(key)
        with self._errors():
            try:
                blob.upload_blob(data, length=len(data), overwrite=not create_only)
            except ResourceExistsError:
                if create_only:
                    return False
                raise
        return True

    def copy(self, src_key: str, dst_key: str) -> bool:
        """Copy Blob inside the account (authorised by the account key), If-None-Match: *; waits until the
        storage reports it done (at once inside one account)."""
        import time

        from azure.core.exceptions import ResourceExistsError

        source, target = self._blob(src_key), self._blob(dst_key)
        with self._errors(src_key):
            source.get_blob_properties()  # BlobMissing before anything is made
            try:
                copy = target.start_copy_from_url(source.url, headers={"If-None-Match": "*"})
            except ResourceExistsError:
                return False
            status, waited = copy.get("copy_status"), 0.0
            while status == "pending":
                time.sleep(min(0.05 * 2 ** waited, 2.0))
                waited += 1
                status = target.get_blob_properties().copy.status
            if status != "success":
                target.delete_blob()
                raise self.unavailable(f"copying {src_key!r} to {dst_key!r} ended as {status!r}")
        return True

    def get_file(self, key: str, local_path: str | Path) -> None:
        self.get_file_sha256(key, local_path)

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        """One GET for a blob up to MULTIPART_THRESHOLD (max_single_get_size), its bytes hashed as they are
        written (they were read again to hash them); a bigger blob in parallel ranges, then hashed. Nothing is
        left at `local_path` when a download fails (a cut one left what it had written)."""
        blob = self._blob(key)
        target = self._local_target(local_path)
        with removed_on_failure(target):
            with self._errors(key):
                downloader = blob.download_blob(max_concurrency=PART_CONCURRENCY)
                with open(target, "wb") as fh:
                    if downloader.size <= MULTIPART_THRESHOLD:  # already read whole by the first GET
                        digest = hashlib.sha256()
                        for chunk in downloader.chunks():
                            digest.update(chunk)
                            fh.write(chunk)
                        return digest.hexdigest()
                    downloader.readinto(fh)
        return sha256_of_file(target)

    def get_bytes(self, key: str) -> bytes:
        blob = self._blob(key)
        with self._errors(key):
            return blob.download_blob().readall()

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        from azure.core.exceptions import HttpResponseError

        check_range(start, end)
        blob = self._blob(key)
        if end == start:
            self.size(key)
            return iter(())
        with self._errors(key):
            try:
                ranged = start > 0 or end is not None
                downloader = blob.download_blob(offset=start if ranged else None,
                                                length=None if end is None else end - start)
            except HttpResponseError as exc:
                if exc.status_code == 416:
                    return iter(())  # the range starts past the end: nothing to send
                raise
        return self._guarded(self._rechunk(downloader.chunks()), key)

    def exists(self, key: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob(key)
        with self._errors():
            try:
                blob.get_blob_properties()
                return True
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                return False

    def size(self, key: str) -> int:
        blob = self._blob(key)
        with self._errors(key):
            return int(blob.get_blob_properties().size)

    def delete(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob(key)
        with self._errors():
            try:
                blob.delete_blob()
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise

    def _names(self, prefix: str) -> Iterator[str]:
        # The SDK pages through the listing itself; names are full and recursive (no folders).
        check_prefix(prefix)
        return iter(self.client.list_blob_names(name_starts_with=self.prefix + prefix))

    def list(self, prefix: str = "") -> Iterator[str]:
        names = self._names(prefix)
        return self._guarded((self._key(name) for name in names), None)

    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        check_prefix(prefix)

        def times() -> Iterator[tuple[str, float | None]]:
            for blob in self.client.list_blobs(name_starts_with=self.prefix + prefix):
                yield self._key(blob.name), blob.last_modified.timestamp() if blob.last_modified else None

        return self._guarded(times(), None)

    def delete_prefix(self, prefix: str) -> int:
        def delete_batch(names: list[str]) -> int:
            # One request per 256 names (Blob Batch); a name already gone answers 404.
            answers = self.client.delete_blobs(*names, raise_on_any_failure=False)
            failed = [a for a in answers if a.status_code not in (200, 202, 204, 404)]
            if failed:
                raise self.unavailable(f"could not delete {len(failed)} objects (HTTP {failed[0].status_code})")
            return sum(a.status_code != 404 for a in answers)

        with self._errors():
            names = list(self._names(prefix))
            batches = [names[i:i + 256] for i in range(0, len(names), 256)]
            with ThreadPoolExecutor(4) as pool:
                return sum(pool.map(delete_batch, batches))
