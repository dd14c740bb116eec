"""Blob transfers straight between the agent and storage, with the server's presigned requests."""
from __future__ import annotations

import logging
import os
import re

import requests
from requests.adapters import HTTPAdapter

from ..engine.leases import Lease
from .client import CHUNK, TIMEOUT

logger = logging.getLogger("volumes.agent")


class DirectTransfers:
    """Blob transfers straight to and from storage with the presigned requests the server gave.

    A transfer without a URL, or whose direct request fails (network error, expired URL, refused),
    returns False and goes through the server's proxy instead; the first failure is logged. The
    requests carry no API token: the URL is the only credential."""

    def __init__(self) -> None:
        self.urls: dict[tuple[str, str, int, str], dict] = {}
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.warned = False

    def add(self, lease: Lease, method: str, urls: dict[str, dict]) -> None:
        for digest, presigned in urls.items():
            self.urls[(method, lease.volume_name, lease.token, digest)] = presigned

    def _failed(self, what: str, problem: str) -> bool:
        problem = re.sub(r"\?\S*", "?...", problem)  # a URL's query is its credential: never logged
        if not self.warned:
            self.warned = True
            logger.warning("a direct transfer to or from storage failed (%s: %s); using the server's proxy "
                           "for it (said once)", what, problem)
        return False

    def download(self, lease: Lease, digest: str, local_path: str) -> bool:
        presigned = self.urls.get(("GET", lease.volume_name, lease.token, digest))
        if presigned is None:
            return False
        try:
            with self.session.get(presigned["url"], headers=presigned["headers"], stream=True, timeout=TIMEOUT,
                                  allow_redirects=False) as response:
                if response.status_code != 200:
                    return self._failed(f"downloading blob {digest}", f"HTTP {response.status_code}")
                with open(local_path, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
        except requests.RequestException as exc:
            return self._failed(f"downloading blob {digest}", str(exc))
        return True

    def upload(self, lease: Lease, digest: str, local_path: str) -> bool:
        presigned = self.urls.pop(("PUT", lease.volume_name, lease.token, digest), None)
        if presigned is None:
            return False
        try:
            with open(local_path, "rb") as body:
                data = body if os.fstat(body.fileno()).st_size else b""
                response = self.session.put(presigned["url"], headers=presigned["headers"], data=data,
                                            timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            return self._failed(f"uploading blob {digest}", str(exc))
        if response.status_code not in (200, 201):
            return self._failed(f"uploading blob {digest}", f"HTTP {response.status_code}")
        return True

