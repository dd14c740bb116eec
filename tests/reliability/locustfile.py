"""The API mix of the load suite, for `locust --headless` (started by test_load.py, not by pytest).

Every user sends `Authorization: Token $LOAD_TOKEN` and, with short pauses, lists the volumes,
lists a folder, downloads a file, uploads a small file and lists the jobs of workspace $LOAD_WS.
Uploads go to the volumes in $LOAD_UPLOAD_VOLUMES (comma-separated); a 409 there is a lease conflict
(a job or another upload holds the volume), which is expected and counted apart, never as an error.

Each request is recorded (name, status, milliseconds) and written as JSON to $LOAD_OUT when locust
quits, so the test computes exact percentiles and error counts itself.
"""
from __future__ import annotations

import json
import os
import random
import uuid

from locust import HttpUser, between, events, task

WS = os.environ.get("LOAD_WS", "acme")
TOKEN = os.environ.get("LOAD_TOKEN", "")
VOLUME = os.environ.get("LOAD_VOLUME", "mix")
FOLDER = os.environ.get("LOAD_FOLDER", "docs")
DOWNLOAD = os.environ.get("LOAD_DOWNLOAD", "readme.txt")
UPLOAD_VOLUMES = [v for v in os.environ.get("LOAD_UPLOAD_VOLUMES", VOLUME).split(",") if v]
OUT = os.environ.get("LOAD_OUT", "locust-requests.json")

RECORDS: list[tuple[str, int, float, str]] = []  # (name, status, ms, error)


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, **_kwargs):
    status = getattr(response, "status_code", 0) or 0
    RECORDS.append((name, int(status), float(response_time), "" if exception is None else str(exception)[:200]))


@events.quitting.add_listener
def _write(environment, **_kwargs):
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(RECORDS, fh)


class ApiUser(HttpUser):
    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {TOKEN}"

    def _get(self, url: str, name: str, expect: int = 200) -> None:
        with self.client.get(url, name=name, catch_response=True) as response:
            if response.status_code != expect:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(3)
    def list_volumes(self) -> None:
        self._get(f"/api/w/{WS}/volumes/", "list volumes")

    @task(3)
    def list_folder(self) -> None:
        self._get(f"/api/w/{WS}/volumes/{VOLUME}/files/{FOLDER}/", "list folder")

    @task(3)
    def download(self) -> None:
        self._get(f"/api/w/{WS}/volumes/{VOLUME}/files/{DOWNLOAD}", "download file")

    @task(1)
    def upload(self) -> None:
        volume = random.choice(UPLOAD_VOLUMES)
        body = os.urandom(random.randint(100, 4096))
        url = f"/api/w/{WS}/volumes/{volume}/files/uploads/{uuid.uuid4().hex[:12]}.bin"
        with self.client.put(url, data=body, name="upload file", catch_response=True,
                             headers={"Content-Type": "application/octet-stream"}) as response:
            if response.status_code in (200, 201, 409):  # 409: the volume is leased right now (expected)
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(2)
    def job_list(self) -> None:
        self._get(f"/api/w/{WS}/jobs/", "list jobs")
