"""Google Cloud Storage (or an emulator) over the client of django-storages' GoogleCloudStorage,
built here because it ignores custom endpoints; retries give up after a few seconds."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import weakref
from datetime import timedelta
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ..exceptions import VolumesError
from .base import (
    CHUNK_SIZE,
    CONNECT_TIMEOUT,
    GIVE_UP_AFTER,
    MULTIPART_THRESHOLD,
    POOL_SIZE,
    READ_TIMEOUT,
    BackendStore,
    Presigned,
    VerifyingReader,
    check_prefix,
    check_range,
    network_reason,
    short_error,
    removed_on_failure,
)

T = TypeVar("T")


class GCSStore(BackendStore):
    """Google Cloud Storage (or an emulator) through storages.backends.gcloud.GoogleCloudStorage."""

    kind = "gcs"
    fork_safe_transfers = True  # see _own_connections

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        project: str | None = None,
        credentials_json: str | dict | None = None,
        *,
        label: str,
    ) -> None:
        import requests
        from google.api_core.retry import Retry
        from google.cloud.storage import Client
        from google.cloud.storage.retry import DEFAULT_RETRY
        from storages.backends.gcloud import GoogleCloudStorage

        super().__init__(prefix, label)
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
        self.storage._client = client
        self.client = client
        self.bucket = self.storage.bucket
        self.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
        # Google's default retries for 120 s; give up after a few seconds instead.
        self.retry: Retry = DEFAULT_RETRY.with_timeout(GIVE_UP_AFTER).with_delay(initial=0.25, maximum=2.0)
        self._keeps_condition: bool | None = None  # see _asks_first
        self._pool = None  # see _http
        self._own_connections()
        store = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (mine := store()) is not None and mine._own_connections())
        self._probe_lock = threading.Lock()

    def _own_connections(self) -> None:
        """Connection pools of this process's own: a forked process (engine/sync.py shares a big pull or push
        with one) must never send on its parent's sockets, where both processes' requests and answers would mix."""
        import requests

        adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE)
        self.client._http.mount("http://", adapter)
        self.client._http.mount("https://", adapter)
        self._pool = None
        self._pool_lock = threading.Lock()  # a new one: another thread may have held the parent's at the fork

    def _translate(self, exc: Exception, key: str | None) -> VolumesError:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as gexc
        from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError

        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            return self._translate(exc.cause, key)
        if isinstance(exc, gexc.NotFound):
            # GCS answers 404 for a missing object and for a missing bucket alike.
            if key is not None and self._bucket_exists():
                return self.missing(key)
            return self.unavailable(f"bucket {self.bucket_name!r} does not exist", "no_bucket")
        if isinstance(exc, (gexc.Unauthorized, gexc.Forbidden)):
            return self.unavailable(f"access was refused ({exc.code}); check the service account key and its roles",
                                    "denied")
        if isinstance(exc, gexc.GoogleAPICallError):
            code = int(exc.code or 0)
            return self.unavailable(f"{exc.code} {exc.message}",
                                    "server_error" if code >= 500 or code in (408, 429) else "other")
        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
            return self.unavailable("no Google credentials on this machine: paste a service account key", "denied")
        if isinstance(exc, google.auth.exceptions.TransportError):
            return self.unavailable(f"cannot reach the token endpoint ({network_reason(exc)})", "unreachable")
        where = self.client._connection.API_BASE_URL if hasattr(self, "client") else "the endpoint"
        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectTimeoutError, ProtocolError)):
            return self.unavailable(f"cannot connect to {where} ({network_reason(exc)})", "unreachable")
        if isinstance(exc, (requests.exceptions.Timeout, ReadTimeoutError)):
            return self.unavailable(f"no answer from {where} (timed out)", "timeout")
        return self.unavailable(short_error(exc))

    def presign_get(self, key: str, expires: int) -> Presigned | None:
        return self._signed(key, expires, "GET", {})

    def presign_put(self, key: str, size: int | None, sha256: str, expires: int) -> Presigned | None:
        # Create-only: generation 0 means "no live object". GCS takes no SHA-256 either.
        return self._signed(key, expires, "PUT", {"x-goog-if-generation-match": "0"})

    def _signed(self, key: str, expires: int, method: str, headers: dict) -> Presigned | None:
        from google.auth.credentials import Signing

        if not isinstance(self.client._credentials, Signing):
            return None  # anonymous (the emulator) or default credentials without a key: cannot sign
        url = self._blob(key).generate_signed_url(
            version="v4", expiration=timedelta(seconds=int(expires)), method=method, headers=dict(headers) or None,
            api_access_endpoint=self.client._connection.API_BASE_URL,
        )
        return Presigned(method, url, headers)

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
                raise self.unavailable(f"bucket {self.bucket_name!r} does not exist", "no_bucket")
            raise self.missing(key)
        return blob

    def _asks_first(self, create_only: bool) -> bool:
        """Whether a create-only write must ask whether the object exists first. GCS refuses ifGenerationMatch=0
        over a live object by itself; gcp-storage-emulator ignores the condition, and there asking first narrows
        the race (a check-before-write). Which one this server is, a probe object written twice finds out, once
        per store: asking first on GCS was a second request for every blob a push uploads."""
        if not create_only:
            return False
        if self._keeps_condition is None:
            with self._probe_lock:
                if self._keeps_condition is None:
                    self._keeps_condition = self._probe_condition()
        return not self._keeps_condition

    def _probe_condition(self) -> bool:
        probe = f".volumes-check/{secrets.token_hex(8)}"
        try:
            return not all(self._upload(probe, b"probe", create_only=True) for _ in range(2))
        finally:
            try:
                self._blob(probe).delete(**self._kw())
            except Exception:
                pass  # a probe left under .volumes-check/ harms nothing

    def put_file(self, key: str, local_path: str | Path, *, sha256: str | None = None,
                 create_only: bool = False) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        blob, source = self._blob(key), self._local_source(local_path)
        if sha256 is None and not create_only:
            with self._errors():
                blob.upload_from_filename(source, content_type="application/octet-stream", **self._kw())
            return True
        if self._asks_first(create_only) and self.exists(key):
            return False
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            reader = VerifyingReader(f, size, sha256, key, source)
            if size <= MULTIPART_THRESHOLD:
                return self._upload(key, reader.read(), create_only)
            with self._errors():
                try:  # resumable: the session is finalised by the last chunk, which only a match hands out
                    blob.upload_from_file(reader, size=size, content_type="application/octet-stream",
                                          if_generation_match=0 if create_only else None, **self._kw())
                except PreconditionFailed:
                    if create_only:
                        return False
                    raise
        return True

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        if self._asks_first(create_only) and self.exists(key):
            return False
        return self._upload(key, data, create_only)

    def _upload(self, key: str, data: bytes, create_only: bool) -> bool:
        """One POST of the bytes (a media upload) through `_http`, as downloads go; create_only: with
        ifGenerationMatch=0, False when the object exists. Retried whole, as Google's client retries a
        conditional upload (an upload without the condition writes the same bytes again)."""
        from google.api_core.exceptions import from_http_status

        url = (f"{self.client._connection.API_BASE_URL}/upload/storage/v1/b/{quote(self.bucket_name, safe='')}/o"
               f"?uploadType=media&name={quote(self._name(key), safe='')}" + ("&ifGenerationMatch=0" * create_only))

        def attempt() -> bool:
            answer = self._http().urlopen("POST", url, body=data,
                                          headers={"Content-Type": "application/octet-stream"})
            if answer.status == 412 and create_only:
                return False
            if answer.status != 200:
                raise from_http_status(answer.status, f"POST {self._name(key)}: "
                                                      f"{answer.data[:500].decode(errors='replace')}")
            return True

        with self._errors():
            return self.retry(attempt)()

    def copy(self, src_key: str, dst_key: str) -> bool:
        """A rewrite inside the bucket, resumed until done, with ifGenerationMatch=0, asked first too whatever
        _asks_first found (it probes uploads only; the emulator ignores the condition on a rewrite as well)."""
        from google.api_core.exceptions import PreconditionFailed

        source = self._get_blob(src_key)  # BlobMissing before anything is made
        if self.exists(dst_key):
            return False
        target = self._blob(dst_key)
        with self._errors(src_key):
            try:
                token, _, _ = target.rewrite(source, if_generation_match=0, **self._kw())
                while token is not None:
                    token, _, _ = target.rewrite(source, token=token, if_generation_match=0, **self._kw())
            except PreconditionFailed:
                return False
        return True

    def get_file(self, key: str, local_path: str | Path) -> None:
        self.get_file_sha256(key, local_path)

    def get_file_sha256(self, key: str, local_path: str | Path) -> str:
        """One GET of the object's bytes, hashed as they are written (download_to_filename read them again to hash
        them); nothing is left at `local_path` when it fails."""
        target = self._local_target(local_path)

        def into_file(chunks: Iterator[bytes]) -> str:
            digest = hashlib.sha256()
            with open(target, "wb") as fh:  # a retry starts the file again
                for chunk in chunks:
                    digest.update(chunk)
                    fh.write(chunk)
            return digest.hexdigest()

        with removed_on_failure(target):
            return self._download(key, into_file)

    def get_bytes(self, key: str) -> bytes:
        return self._download(key, b"".join)

    def _download(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T:
        """consume(the object's bytes in chunks), over one GET, retried whole as Google's client retries."""
        from google.api_core.exceptions import from_http_status

        url = (f"{self.client._connection.API_BASE_URL}/download/storage/v1/b/{quote(self.bucket_name, safe='')}"
               f"/o/{quote(self._name(key), safe='')}?alt=media")

        def attempt() -> T:
            answer = self._http().urlopen("GET", url, preload_content=False)
            try:
                if answer.status != 200:
                    detail = answer.read(500).decode(errors="replace")
                    raise from_http_status(answer.status, f"GET {self._name(key)}: {detail}")
                return consume(answer.stream(CHUNK_SIZE))
            finally:
                answer.release_conn()

        with self._errors(key):
            return self.retry(attempt)()

    def _http(self):
        """The connections blob transfers go through: urllib3 under google-auth's own transport (which adds the
        token and refreshes it on a 401). A request through requests and the client's session cost about twice
        the Python (requests reads the proxy variables of the environment again for each request): with 10,000
        small blobs that Python is the pull. The proxy and the CA bundle are those requests would use for the
        endpoint, found once."""
        with self._pool_lock:  # the transfer threads all start at once
            return self._pool or self._new_pool()

    def _new_pool(self):
        import requests.utils
        import urllib3
        from google.auth.transport.urllib3 import AuthorizedHttp

        base = self.client._connection.API_BASE_URL
        env = self.client._http.merge_environment_settings(base, {}, None, None, None)
        verify = env["verify"]
        options = {"maxsize": POOL_SIZE, "retries": False,
                   "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                   **({"cert_reqs": "CERT_NONE"} if verify is False else
                      {"ca_certs": requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify})}
        proxy = requests.utils.select_proxy(base, env["proxies"])
        if proxy:
            auth = urllib3.util.parse_url(proxy).auth
            pool = urllib3.ProxyManager(proxy, proxy_headers=urllib3.make_headers(proxy_basic_auth=auth)
                                        if auth else None, **options)
        else:
            pool = urllib3.PoolManager(**options)
        self._pool = AuthorizedHttp(self.client._credentials, http=pool)
        # As the client does for its session: a client certificate where GOOGLE_API_USE_CLIENT_CERTIFICATE asks for
        # mutual TLS (google-auth makes its own pool then: without the proxy and timeouts above), nothing otherwise.
        self._pool.configure_mtls_channel(self.client._client_cert_source)
        return self._pool

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

    def list_with_times(self, prefix: str = "") -> Iterator[tuple[str, float | None]]:
        check_prefix(prefix)

        def times() -> Iterator[tuple[str, float | None]]:
            for blob in self.client.list_blobs(self.bucket_name, prefix=self.prefix + prefix, **self._kw()):
                yield self._key(blob.name), blob.updated.timestamp() if blob.updated else None

        return self._guarded(times(), None)

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
