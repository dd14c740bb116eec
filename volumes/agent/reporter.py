"""The runner's Reporter over HTTP: the job's log, status, heartbeat and figures."""
from __future__ import annotations

import threading
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Callable

from .. import exceptions
from ..exceptions import VolumesError
from .client import ApiClient, url_segment


class HttpReporter:
    """The runner's Reporter for one claimed job: log lines (flushed by a background thread every
    FLUSH_SECONDS, so a job waiting for a lease says so at once), status and figures over HTTP."""

    FLUSH_SECONDS = 0.5

    def __init__(self, client: ApiClient, job_id: int, job_key: str, echo: Callable[[str], None] | None = None):
        self.client = client
        self.base = f"agent/jobs/{job_id}/"
        self.headers = {"X-Job-Key": job_key}
        self.echo = echo
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="log-flusher", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.FLUSH_SECONDS):
            try:
                self.flush()
            except VolumesError:
                pass  # kept for the next try

    def _post(self, rest: str, body: dict | None = None) -> Any:
        return self.client.json("POST", self.base + rest, json=body or {}, headers=self.headers)

    def log(self, line: str) -> None:
        stamped = f"[{datetime.now(dt_timezone.utc):%H:%M:%S}] {line}".replace("\x00", "\ufffd")
        if self.echo:
            self.echo(stamped)
        with self._lock:
            self._buffer.append(stamped + "\n")

    def flush(self) -> None:
        with self._send_lock:  # one sender at a time keeps the lines in order
            with self._lock:
                text, self._buffer = "".join(self._buffer), []
            if not text:
                return
            try:
                self._post("log/", {"text": text})
            except exceptions.JobFinished:
                return  # the server finished the job (reaped, say): its log is closed
            except exceptions.StorageUnavailable:
                with self._lock:  # keep the lines for the next flush
                    self._buffer.insert(0, text)
                raise

    def status(self, status: str) -> None:
        self._post("status/", {"status": status})

    def heartbeat(self) -> bool:
        return bool(self._post("heartbeat/")["cancel"])

    def mount_figures(self, volume_name: str, **figures: Any) -> None:
        self.client.json("POST", f"{self.base}volumes/{url_segment(volume_name)}/figures/", json={"figures": figures},
                         headers=self.headers)

    def script_started(self) -> None:
        self._post("script/", {"event": "started"})

    def script_finished(self) -> None:
        self._post("script/", {"event": "finished"})

    def close(self) -> None:
        self._closed.set()
        self._flusher.join()

    def finish(self, status: str, result: Any = None, error: str = "") -> None:
        self.close()
        self.flush()
        try:
            self._post("finish/", {"status": status, "result": result,
                                   "error": (error or "").replace("\x00", "\ufffd")})
        except exceptions.JobFinished:
            pass  # reaped or finished meanwhile: the server keeps the first outcome
