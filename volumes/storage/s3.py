"""S3 and compatible stores (MinIO, Ceph, R2...) over the boto3 client of django-storages' S3Storage,
with short timeouts, few retries and verified multipart uploads."""
from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..exceptions import VolumesError
from .base import (
    CHUNK_SIZE,
    CONNECT_TIMEOUT,
    MULTIPART_THRESHOLD,
    PART_CONCURRENCY,
    PART_SIZE,
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


COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; bigger objects are copied in parts


class S3Store(BackendStore):
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
        *,
        label: str,
    ) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from storages.backends.s3 import S3Storage

        super().__init__(prefix, label)
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
        from boto3.exceptions import RetriesExceededError, S3TransferFailedError, S3UploadFailedError
        from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, (S3UploadFailedError, S3TransferFailedError)) and exc.__context__ is not None:
            return self._translate(exc.__context__, key) if isinstance(exc.__context__, Exception) else \
                self.unavailable(short_error(exc))
        if isinstance(exc, RetriesExceededError) and isinstance(exc.last_exception, Exception):
            return self._translate(exc.last_exception, key)
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return self.unavailable(f"bucket {self.bucket!r} does not exist", "no_bucket")
            if key is not None and (code in ("NoSuchKey", "404", "NotFound") or status == 404):
                return self.missing(key)
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                        "InvalidToken", "403") or status in (401, 403):
                return self.unavailable(f"access was refused ({code or status}); check the access key and secret key",
                                        "denied")
            transient = (isinstance(status, int) and status >= 500) or code in (
                "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed")
            return self.unavailable(f"{code or status}: {error.get('Message') or short_error(exc)}",
                                    "server_error" if transient else "other")
        if isinstance(exc, BotoConnectionError):  # refused, DNS, connect timeout
            return self.unavailable(f"cannot connect to {self.client.meta.endpoint_url} ({network_reason(exc)})",
                                    "unreachable")
        if isinstance(exc, HTTPClientError):  # read timeout, connection reset or closed mid-answer
            return self.unavailable(f"no answer from {self.client.meta.endpoint_url} ({network_reason(exc)})",
                                    "timeout")
        if isinstance(exc, NoCredentialsError):
            return self.unavailable("no credentials: set the access key and secret key", "denied")
        return self.unavailable(short_error(exc))

    def presign_get(self, key: str, expires: int) -> Presigned | None:
        return self._presign("get_object", {"Key": self._name(key)}, expires, "GET", {})

    def presign_put(self, key: str, size: int | None, sha256: str, expires: int) -> Presigned | None:
        # The checksum and the condition are signed headers: S3 refuses other bytes and never overwrites.
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        headers = {"x-amz-checksum-sha256": checksum, "If-None-Match": "*"}
        params = {"Key": self._name(key), "ChecksumSHA256": checksum, "IfNoneMatch": "*"}
        return self._presign("put_object", params, expires, "PUT", headers)

    def _presign(self, operation: str, params: dict, expires: int, method: str, headers: dict) -> Presigned | None:
        from botocore.exceptions import NoCredentialsError

        try:
            url = self.client.generate_presigned_url(operation, Params={"Bucket": self.bucket, **params},
                                                     ExpiresIn=int(expires))
        except NoCredentialsError:
            return None  # anonymous access: nothing to sign with
        return Presigned(method, url, headers)

    def _missing_or_no_bucket(self, key: str) -> VolumesError:
        """A HEAD 404 does not say whether the key or the bucket is missing: ask."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return self.unavailable(f"bucket {self.bucket!r} does not exist", "no_bucket")
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

    @staticmethod
    def _precondition_failed(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(exc, ClientError) and (
            exc.response.get("Error", {}).get("Code") == "PreconditionFailed"
            or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
        )

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        name, source = self._name(key), self._local_source(local_path)
        if sha256 is None and not create_only:
            with self._errors():
                self.client.upload_file(source, self.bucket, name, Config=self.transfer)
            return True
        with open(source, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            reader = VerifyingReader(fh, size, sha256, key, source)
            if size <= MULTIPART_THRESHOLD:
                return self.put_bytes(key, reader.read(), create_only=create_only)
            return self._put_multipart(name, reader, size, create_only)

    def _put_multipart(self, name: str, reader: VerifyingReader, size: int, create_only: bool) -> bool:
        """Parts read (and hashed) in order, sent in parallel; completed only once every byte matched,
        with If-None-Match: * when create_only."""
        with self._errors():
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        parts: list[dict] = []
        slots = threading.BoundedSemaphore(PART_CONCURRENCY)  # at most this many parts in memory

        def send(number: int, data: bytes) -> dict:
            try:
                answer = self.client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                 PartNumber=number, Body=data)
                return {"PartNumber": number, "ETag": answer["ETag"]}
            finally:
                slots.release()

        try:
            with self._errors(), ThreadPoolExecutor(PART_CONCURRENCY) as pool:
                futures = []
                for number in range(1, (size + PART_SIZE - 1) // PART_SIZE + 1):
                    slots.acquire()
                    futures.append(pool.submit(send, number, reader.read(PART_SIZE)))
                parts = [f.result() for f in futures]
            extra = {"IfNoneMatch": "*"} if create_only else {}
            with self._errors():
                try:
                    self.client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                          MultipartUpload={"Parts": parts}, **extra)
                except Exception as exc:
                    if create_only and self._precondition_failed(exc):
                        self._abort(name, upload_id)
                        return False
                    raise
            return True
        except BaseException:
            self._abort(name, upload_id)
            raise

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except Exception:
            pass  # GC aborts what is left

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        name = self._name(key)
        extra = {"IfNoneMatch": "*"} if create_only else {}
        with self._errors():
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, **extra)
            except Exception as exc:
                if create_only and self._precondition_failed(exc):
                    return False
                raise
        return True

    def copy(self, src_key: str, dst_key: str) -> bool:
        """CopyObject (or UploadPartCopy part by part past 5 GiB) with If-None-Match: *. Servers that ignore
        it on a copy (moto) are asked first too: a check-before-write that narrows the race there."""
        head = self._head(src_key)
        if head is None:
            raise self._missing_or_no_bucket(src_key)
        if self._head(dst_key) is not None:
            return False
        source = {"Bucket": self.bucket, "Key": self._name(src_key)}
        name = self._name(dst_key)
        with self._errors(src_key):
            try:
                if int(head["ContentLength"]) <= COPY_LIMIT:
                    self.client.copy_object(Bucket=self.bucket, Key=name, CopySource=source, IfNoneMatch="*",
                                            ChecksumAlgorithm="CRC32")
                    return True
                return self._copy_parts(source, name, int(head["ContentLength"]))
            except Exception as exc:
                if self._precondition_failed(exc):
                    return False
                raise

    def _copy_parts(self, source: dict, name: str, size: int) -> bool:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        part = max(PART_SIZE, -(-size // 10_000))  # S3 allows 10,000 parts

        def send(number: int) -> dict:
            start = (number - 1) * part
            answer = self.client.upload_part_copy(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, CopySource=source,
                CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}")
            return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(PART_CONCURRENCY) as pool:
                parts = list(pool.map(send, range(1, -(-size // part) + 1)))
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            return True
        except BaseException:
            self._abort(name, upload_id)
            raise

    def get_file(self, key: str, local_path: str | Path) -> None:
        self.get_file_sha256(key, local_path)

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        """One GET, its bytes hashed as they are written, for an object up to MULTIPART_THRESHOLD (download_file
        asks a HEAD first: two requests for each small blob); a bigger one in parallel ranges, then hashed.
        Nothing is left at `local_path` when a download fails."""
        from botocore.exceptions import ClientError

        name = self._name(key)
        target = self._local_target(local_path)
        with removed_on_failure(target):
            with self._errors(key):
                try:
                    answer = self.client.get_object(Bucket=self.bucket, Key=name)
                    if answer["ContentLength"] <= MULTIPART_THRESHOLD:
                        digest = hashlib.sha256()
                        body = answer["Body"]
                        with body, open(target, "wb") as fh:
                            for chunk in body.iter_chunks(CHUNK_SIZE):
                                digest.update(chunk)
                                fh.write(chunk)
                        return digest.hexdigest()
                    answer["Body"].close()
                    self.client.download_file(self.bucket, name, target, Config=self.transfer)
                except ClientError as exc:
                    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                        raise self._missing_or_no_bucket(key) from None
                    raise
        return sha256_of_file(target)

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

    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        check_prefix(prefix)

        def times() -> Iterator[tuple[str, float | None]]:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", ()):
                    modified = item.get("LastModified")
                    yield self._key(item["Key"]), modified.timestamp() if modified else None

        return self._guarded(times(), None)

    def abort_incomplete_uploads(self, prefix: str, older_than: float | None = None) -> int:
        """Abort the multipart uploads under `prefix`: S3 keeps (and bills) their parts until then."""
        check_prefix(prefix)
        count = 0
        with self._errors():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for upload in page.get("Uploads", ()):
                    started = upload.get("Initiated")
                    if older_than is not None and started is not None and started.timestamp() > older_than:
                        continue  # maybe an upload still in progress
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
