"""The four ObjectStore backends, each over its django-storages (or Django) storage class.

The django-storages object holds the configuration and owns the vendor client; the stores call
that client directly where django-storages has no equivalent (ranged reads, paginated listing,
batch deletes, multipart transfers) or does not let us set short timeouts and few retries. Every
vendor, network and disk error is translated here into BlobMissing or StorageUnavailable.

Django settings must be configured before a store is built (django-storages reads its defaults
from them); every value that matters is passed explicitly.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import StorageUnavailable, VolumesError
from .base import CHUNK_SIZE, ObjectStore, check_key, check_prefix, check_range

CONNECT_TIMEOUT = 2.0  # seconds to open a connection: a storage that is down fails fast
READ_TIMEOUT = 30.0  # seconds without a byte from a connected server
GIVE_UP_AFTER = 4.0  # seconds of retrying before an operation gives up (GCS)
POOL_SIZE = 32  # HTTP connections per store (engine threads x parallel parts)
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # larger files go up/down in parallel parts
PART_SIZE = 8 * 1024 * 1024
PART_CONCURRENCY = 4
DELETE_THREADS = 8
_TMP_SUFFIX = ".volumes-tmp"  # filesystem temp files; never listed as keys


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or "no details"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REASONS = ("Connection refused", "timed out", "Name or service not known", "Temporary failure in name resolution",
            "No route to host", "Network is unreachable", "certificate verify failed", "Connection reset")


def _network_reason(exc: BaseException) -> str:
    """'Connection refused', 'timed out'... from a network error, else a short description."""
    text = str(exc)
    for reason in _REASONS:
        if reason.lower() in text.lower():
            return reason.lower()
    return _short(exc, 160)


def _join_prefix(prefix: str) -> str:
    """'a/b' or '/a/b/' -> 'a/b/'; '' stays ''."""
    prefix = (prefix or "").strip("/")
    if prefix:
        check_key(prefix)
        return prefix + "/"
    return ""


class _Store(ObjectStore):
    """Shared plumbing: key <-> object name under the store prefix, error translation."""

    def __init__(self, prefix: str, label: str) -> None:
        self.prefix = _join_prefix(prefix)
        self.label = label

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _key(self, name: str) -> str:
        return name[len(self.prefix):]

    def unavailable(self, detail: str) -> StorageUnavailable:
        return StorageUnavailable(self.label, detail)

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        """The vendor exception as BlobMissing (key given and object absent) or StorageUnavailable."""
        raise NotImplementedError

    @contextmanager
    def _errors(self, key: str | None = None):
        try:
            yield
        except VolumesError:
            raise
        except Exception as exc:  # the edge: nothing vendor-specific leaves a store
            raise self._translate(exc, key) from exc

    def _guarded(self, chunks: Iterator, key: str | None) -> Iterator:
        """Translate errors raised while a stream is consumed."""
        with self._errors(key):
            yield from chunks

    @staticmethod
    def _rechunk(chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Slices of at most CHUNK_SIZE bytes, whatever sizes the SDK hands out."""
        for chunk in chunks:
            for i in range(0, len(chunk), CHUNK_SIZE):
                yield chunk[i:i + CHUNK_SIZE] if len(chunk) > CHUNK_SIZE else chunk

    @staticmethod
    def _local_source(local_path: str | Path) -> str:
        """The file to upload; a missing one is the caller's error (raised as is), not the storage's."""
        os.stat(local_path)
        return str(local_path)

    @staticmethod
    def _local_target(local_path: str | Path) -> str:
        """Where to download; a missing folder is the caller's error (raised as is)."""
        parent = os.path.dirname(os.path.abspath(local_path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(errno.ENOENT, "no folder to download into", parent)
        return str(local_path)

    def _parallel_delete(self, names: Iterator[str], delete_one: Callable[[str], bool]) -> int:
        with self._errors(), ThreadPoolExecutor(DELETE_THREADS) as pool:
            return sum(pool.map(delete_one, names))

    def abort_incomplete_uploads(self, prefix: str) -> int:
        """Remove what interrupted uploads left under `prefix` (never visible to list); returns how many.

        Only safe while nobody writes there (GC holds the volume's lease). Azure drops uncommitted
        blocks and GCS resumable sessions by itself after a week: nothing to do for them here."""
        return 0

    def check(self) -> None:
        """List, write and delete a small probe object under the store's prefix."""
        probe = f".volumes-check/{secrets.token_hex(8)}"
        for _ in self.list(".volumes-check/"):
            break
        self.put_bytes(probe, b"ok")
        if self.get_bytes(probe) != b"ok":
            raise self.unavailable("a test object read back different bytes")
        self.delete(probe)


# --- filesystem -----------------------------------------------------------------------------


class FileSystemStore(_Store):
    """Files under a root folder; writes go to a temp file in the same folder, then os.replace."""

    kind = "filesystem"

    def __init__(self, root: str, prefix: str = "", label: str | None = None) -> None:
        from django.core.files.storage import FileSystemStorage

        if not os.path.isabs(root):
            raise ValueError(f"a filesystem storage needs an absolute root folder, not {root!r}")
        self.root = os.path.normpath(root)
        super().__init__(prefix, label or f"file://{self.root}")
        self.storage = FileSystemStorage(location=self.root, base_url="/unused/")

    def _path(self, key: str) -> str:
        return self.storage.path(self._name(key))  # safe_join: never outside the root

    def _root_problem(self) -> str | None:
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            return f"the root {self.root!r} is not a folder"
        return None

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        problem = self._root_problem()
        if problem:
            return self.unavailable(problem)
        if key is not None and isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            return self.missing(key)
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return self.unavailable(f"no permission to use {exc.filename or self.root!r} ({exc.strerror})")
        return self.unavailable(_short(exc))

    def _write(self, key: str, fill: Callable[[int], None]) -> None:
        path = self._path(key)
        with self._errors():
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)[:100]}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                try:
                    fill(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def put_file(self, key: str, local_path: str | Path) -> None:
        source = self._local_source(local_path)

        def fill(fd: int) -> None:
            with open(source, "rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)

        self._write(key, fill)

    def put_bytes(self, key: str, data: bytes) -> None:
        def fill(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

        self._write(key, fill)

    def get_file(self, key: str, local_path: str | Path) -> None:
        path = self._path(key)
        with self._errors(key):
            src = open(path, "rb")
        with src, open(local_path, "wb") as dst:  # errors of the local target are raised as they are
            while True:
                with self._errors(key):
                    chunk = src.read(CHUNK_SIZE)
                if not chunk:
                    break
                dst.write(chunk)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors(key), open(path, "rb") as f:
            return f.read()

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        path = self._path(key)
        with self._errors(key):
            f = open(path, "rb")

        def chunks() -> Iterator[bytes]:
            with f:
                f.seek(start)
                remaining = None if end is None else end - start
                while remaining is None or remaining > 0:
                    data = f.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                    if not data:
                        return
                    if remaining is not None:
                        remaining -= len(data)
                    yield data

        return self._guarded(chunks(), key)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with self._errors():
            if os.path.isfile(path):
                return True
            problem = self._root_problem()
            if problem:
                raise self.unavailable(problem)
            return False

    def size(self, key: str) -> int:
        path = self._path(key)
        with self._errors(key):
            if os.path.isdir(path):
                raise FileNotFoundError(path)
            return os.stat(path).st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors():
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # no such object
                problem = self._root_problem()
                if problem:
                    raise self.unavailable(problem) from None

    def _walk(self, prefix: str, with_temp: bool = False) -> Iterator[tuple[str, str]]:
        """(key, path) of every file whose key starts with prefix."""
        check_prefix(prefix)
        name_prefix = self.prefix + prefix
        folder_name = name_prefix.rpartition("/")[0]
        top = os.path.join(self.root, *folder_name.split("/")) if folder_name else self.root
        problem = self._root_problem()
        if problem:
            raise self.unavailable(problem)

        def raise_error(exc: OSError) -> None:
            if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                raise exc

        for dirpath, dirnames, filenames in os.walk(top, onerror=raise_error):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if not (base.startswith(name_prefix) or name_prefix.startswith(base)):
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if (base + d + "/").startswith(name_prefix)
                           or name_prefix.startswith(base + d + "/")]
            for filename in filenames:
                name = base + filename
                if not name.startswith(name_prefix):
                    continue
                if filename.endswith(_TMP_SUFFIX) and not with_temp:
                    continue
                yield self._key(name), os.path.join(dirpath, filename)

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        return self._guarded((key for key, _ in self._walk(prefix)), None)

    def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        count = 0
        with self._errors():
            for key, path in list(self._walk(prefix, with_temp=True)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                count += not path.endswith(_TMP_SUFFIX)
            if prefix.endswith("/"):  # drop the folders left empty beneath the prefix
                top = os.path.join(self.root, *(self.prefix + prefix).rstrip("/").split("/"))
                for dirpath, _dirnames, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
        return count

    def abort_incomplete_uploads(self, prefix: str) -> int:
        """The temp files of writes killed before their rename."""
        count = 0
        with self._errors():
            for _key, path in list(self._walk(prefix, with_temp=True)):
                if path.endswith(_TMP_SUFFIX):
                    try:
                        os.unlink(path)
                        count += 1
                    except FileNotFoundError:
                        pass
        return count

    def check(self) -> None:
        with self._errors():
            os.makedirs(self.root, exist_ok=True)
        super().check()


# --- S3 -------------------------------------------------------------------------------------


class S3Store(_Store):
    """S3 or compatible (MinIO, Ceph, R2...) through storages.backends.s3.S3Storage's boto3 client."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        label: str | None = None,
    ) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from storages.backends.s3 import S3Storage

        super().__init__(prefix, label or f"s3://{bucket}/{prefix}".rstrip("/"))
        self.bucket = bucket
        client_config = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            max_pool_connections=POOL_SIZE,
        )
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_SIZE,
            max_concurrency=PART_CONCURRENCY,
            use_threads=True,
        )
        self.storage = S3Storage(
            bucket_name=bucket,
            location=self.prefix.rstrip("/"),
            endpoint_url=endpoint_url or None,
            region_name=region or None,
            access_key=access_key or None,
            secret_key=secret_key or None,
            security_token=None,
            session_profile=None,
            addressing_style="path",
            signature_version="s3v4",
            client_config=client_config,
            transfer_config=self.transfer,
            file_overwrite=True,
        )
        # One boto3 client for every thread (clients are thread-safe; S3Storage.connection is per thread).
        self.client = self.storage.connection.meta.client

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return self.unavailable(f"bucket {self.bucket!r} does not exist")
            if key is not None and (code in ("NoSuchKey", "404", "NotFound") or status == 404):
                return self.missing(key)
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                        "InvalidToken", "403") or status in (401, 403):
                return self.unavailable(f"access was refused ({code or status}); check the access key and secret key")
            return self.unavailable(f"{code or status}: {error.get('Message') or _short(exc)}")
        if isinstance(exc, EndpointConnectionError):
            return self.unavailable(f"cannot connect to {self.client.meta.endpoint_url} ({_network_reason(exc)})")
        if isinstance(exc, NoCredentialsError):
            return self.unavailable("no credentials: set the access key and secret key")
        return self.unavailable(_short(exc))

    def _missing_or_no_bucket(self, key: str) -> VolumesError:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return self.unavailable(f"bucket {self.bucket!r} does not exist")
            return self._translate(exc, None)
        except Exception as exc:
            return self._translate(exc, None)
        return self.missing(key)

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        with self._errors():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self._name(key))
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

    def put_file(self, key: str, local_path: str | Path) -> None:
        name, source = self._name(key), self._local_source(local_path)
        with self._errors():
            self.client.upload_file(source, self.bucket, name, Config=self.transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get_file(self, key: str, local_path: str | Path) -> None:
        from botocore.exceptions import ClientError

        name = self._name(key)
        target = self._local_target(local_path)
        with self._errors(key):
            try:
                self.client.download_file(self.bucket, name, target, Config=self.transfer)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    raise self._missing_or_no_bucket(key) from None
                raise

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with body:
                return body.read()

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        check_range(start, end)
        name = self._name(key)
        if end == start:
            self.size(key)
            return iter(())
        args = {"Bucket": self.bucket, "Key": name}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with self._errors(key):
            try:
                body = self.client.get_object(**args)["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return iter(())  # the range starts past the end: nothing to send
                raise

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(CHUNK_SIZE)

        return self._guarded(chunks(), key)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise self._missing_or_no_bucket(key)
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        name = self._name(key)
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def _names(self, prefix: str) -> Iterator[list[str]]:
        """Pages of full object names (at most 1,000 each)."""
        check_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            yield [item["Key"] for item in page.get("Contents", ())]

    def list(self, prefix: str = "") -> Iterator[str]:
        pages = self._names(prefix)
        return self._guarded((self._key(name) for page in pages for name in page), None)

    def abort_incomplete_uploads(self, prefix: str) -> int:
        """Abort the multipart uploads under `prefix`: S3 keeps (and bills) their parts until then."""
        check_prefix(prefix)
        count = 0
        with self._errors():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for upload in page.get("Uploads", ()):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    count += 1
        return count

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        with self._errors():
            for page in self._names(prefix):
                if not page:
                    continue
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": name} for name in page], "Quiet": True}
                )
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise self.unavailable(
                        f"could not delete {len(errors)} objects, e.g. {first.get('Key')!r}: {first.get('Code')}"
                    )
                count += len(page)
        return count


# --- Azure Blob -----------------------------------------------------------------------------


class AzureStore(_Store):
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
        label: str | None = None,
    ) -> None:
        import requests
        from azure.storage.blob import BlobServiceClient, LinearRetry
        from storages.backends.azure_storage import AzureStorage

        super().__init__(prefix, label or f"az://{container}/{prefix}".rstrip("/"))
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
        else:
            if not (account_name and account_key):
                raise ValueError("an Azure storage needs a connection string, or an account name and key")
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
                return self.unavailable(f"container {self.container_name!r} does not exist")
            if key is not None and (code == "BlobNotFound" or isinstance(exc, ResourceNotFoundError)):
                return self.missing(key)
            if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
                return self.unavailable(
                    f"access was refused ({code or exc.status_code}); check the account key or connection string"
                )
            return self.unavailable(f"{exc.status_code} {code or exc.reason}")
        if isinstance(exc, ServiceRequestError):
            return self.unavailable(f"cannot connect to {self._endpoint()} ({_network_reason(exc)})")
        if isinstance(exc, ServiceResponseError):
            return self.unavailable(f"no answer from {self._endpoint()} ({_network_reason(exc)})")
        return self.unavailable(_short(exc))

    def _endpoint(self) -> str:
        return self.client.url.split("?")[0].rsplit("/", 1)[0]

    def _blob(self, key: str):
        return self.client.get_blob_client(self._name(key))

    def put_file(self, key: str, local_path: str | Path) -> None:
        blob = self._blob(key)
        with open(self._local_source(local_path), "rb") as f, self._errors():
            blob.upload_blob(f, length=os.fstat(f.fileno()).st_size, overwrite=True,
                             max_concurrency=PART_CONCURRENCY)

    def put_bytes(self, key: str, data: bytes) -> None:
        blob = self._blob(key)
        with self._errors():
            blob.upload_blob(data, length=len(data), overwrite=True)

    def get_file(self, key: str, local_path: str | Path) -> None:
        blob = self._blob(key)
        target = self._local_target(local_path)
        with self._errors(key):
            downloader = blob.download_blob(max_concurrency=PART_CONCURRENCY)
            with open(target, "wb") as f:
                downloader.readinto(f)

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


# --- Google Cloud Storage -------------------------------------------------------------------


class GCSStore(_Store):
    """Google Cloud Storage (or an emulator) through storages.backends.gcloud.GoogleCloudStorage."""

    kind = "gcs"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        project: str | None = None,
        credentials_json: str | dict | None = None,
        label: str | None = None,
    ) -> None:
        import requests
        from google.api_core.retry import Retry
        from google.cloud.storage import Client
        from google.cloud.storage.retry import DEFAULT_RETRY
        from storages.backends.gcloud import GoogleCloudStorage

        super().__init__(prefix, label or f"gs://{bucket}/{prefix}".rstrip("/"))
        self.bucket_name = bucket
        endpoint = (endpoint or "").rstrip("/") or None
        if credentials_json:
            from google.oauth2 import service_account

            info = json.loads(credentials_json) if isinstance(credentials_json, str) else credentials_json
            credentials = service_account.Credentials.from_service_account_info(info)
            project = project or info.get("project_id")
        elif endpoint:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # emulators take any request
            project = project or "volumes"
        else:
            credentials = None  # Google's default credentials of this machine
        self.storage = GoogleCloudStorage(
            bucket_name=bucket,
            location=self.prefix.rstrip("/"),
            project_id=project or None,
            credentials=credentials,
            custom_endpoint=f"{endpoint}/{bucket}" if endpoint else None,
            querystring_auth=False,
            file_overwrite=True,
        )
        # GoogleCloudStorage.client ignores custom_endpoint (it only shapes URLs): build the client.
        with self._errors():
            client = Client(
                project=project or None,
                credentials=credentials,
                client_options={"api_endpoint": endpoint} if endpoint else None,
            )
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE)
            client._http.mount("http://", adapter)
            client._http.mount("https://", adapter)
        self.storage._client = client
        self.client = client
        self.bucket = self.storage.bucket
        self.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
        # Google's default retries for 120 s; give up after a few seconds instead.
        self.retry: Retry = DEFAULT_RETRY.with_timeout(GIVE_UP_AFTER).with_delay(initial=0.25, maximum=2.0)

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            return self._translate(exc.cause, key)
        if isinstance(exc, gexc.NotFound):
            # GCS answers 404 for a missing object and for a missing bucket alike.
            if key is not None and self._bucket_exists():
                return self.missing(key)
            return self.unavailable(f"bucket {self.bucket_name!r} does not exist")
        if isinstance(exc, (gexc.Unauthorized, gexc.Forbidden)):
            return self.unavailable(f"access was refused ({exc.code}); check the service account key and its roles")
        if isinstance(exc, gexc.GoogleAPICallError):
            return self.unavailable(f"{exc.code} {exc.message}")
        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
            return self.unavailable("no Google credentials on this machine: paste a service account key")
        where = self.client._connection.API_BASE_URL if hasattr(self, "client") else "the endpoint"
        if isinstance(exc, requests.exceptions.ConnectionError):  # includes ConnectTimeout
            return self.unavailable(f"cannot connect to {where} ({_network_reason(exc)})")
        if isinstance(exc, requests.exceptions.Timeout):
            return self.unavailable(f"no answer from {where} (timed out)")
        return self.unavailable(_short(exc))

    def _bucket_exists(self) -> bool:
        try:
            return self.bucket.exists(**self._kw())
        except Exception:
            return True  # cannot tell: report the object as missing rather than guess

    def _blob(self, key: str):
        return self.bucket.blob(self._name(key))

    def _kw(self) -> dict:
        return {"timeout": self.timeout, "retry": self.retry}

    def _get_blob(self, key: str):
        """The blob with its metadata, or BlobMissing."""
        name = self._name(key)
        with self._errors(key):
            blob = self.bucket.get_blob(name, **self._kw())
        if blob is None:
            if not self._bucket_exists():
                raise self.unavailable(f"bucket {self.bucket_name!r} does not exist")
            raise self.missing(key)
        return blob

    def put_file(self, key: str, local_path: str | Path) -> None:
        blob, source = self._blob(key), self._local_source(local_path)
        with self._errors():
            blob.upload_from_filename(source, content_type="application/octet-stream", **self._kw())

    def put_bytes(self, key: str, data: bytes) -> None:
        blob = self._blob(key)
        with self._errors():
            blob.upload_from_string(data, content_type="application/octet-stream", **self._kw())

    def get_file(self, key: str, local_path: str | Path) -> None:
        blob = self._blob(key)
        target = self._local_target(local_path)
        with self._errors(key):
            blob.download_to_filename(target, **self._kw())

    def get_bytes(self, key: str) -> bytes:
        blob = self._blob(key)
        with self._errors(key):
            return blob.download_as_bytes(**self._kw())

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        blob = self._get_blob(key)  # BlobMissing now, not on the first chunk
        stop = blob.size if end is None else min(end, blob.size)
        step = 4 * CHUNK_SIZE

        def chunks() -> Iterator[bytes]:
            for offset in range(start, stop, step):
                # `blob` carries the generation we saw, so every part comes from the same object.
                yield blob.download_as_bytes(start=offset, end=min(offset + step, stop) - 1, **self._kw())

        return self._guarded(self._rechunk(chunks()), key)

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        with self._errors():
            return blob.exists(**self._kw())

    def size(self, key: str) -> int:
        return int(self._get_blob(key).size)

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        with self._errors():
            try:
                blob.delete(**self._kw())
            except NotFound:
                if not self._bucket_exists():
                    raise

    def _names(self, prefix: str) -> Iterator[str]:
        check_prefix(prefix)
        # The iterator follows nextPageToken itself (1,000 names per page).
        blobs = self.client.list_blobs(self.bucket_name, prefix=self.prefix + prefix, **self._kw())
        return (blob.name for blob in blobs)

    def list(self, prefix: str = "") -> Iterator[str]:
        names = self._names(prefix)
        return self._guarded((self._key(name) for name in names), None)

    def delete_prefix(self, prefix: str) -> int:
        from google.api_core.exceptions import NotFound

        def delete_one(name: str) -> bool:
            try:
                self.bucket.blob(name).delete(**self._kw())
                return True
            except NotFound:
                return False  # deleted meanwhile (the listing proved the bucket exists)

        with self._errors():
            names = list(self._names(prefix))
        return self._parallel_delete(names, delete_one)
