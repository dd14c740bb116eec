"""The watchdog judges a lease by a clock that starts before the acquire was sent, never after it returned."""
from __future__ import annotations

import threading
import time

from volumes.engine.leases import Lease
from volumes.runner.job import _Renewer


class HangingRemote:
    """Every renew hangs (a database that stopped answering)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def renew(self, lease) -> None:
        self.release.wait(30)


class QuietReporter:
    def heartbeat(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def test_the_watchdog_stops_the_job_before_the_lease_can_expire_counting_from_the_send(settings):
    settings.VOLUMES = {**settings.VOLUMES, "LEASE_TTL": 2.0, "LEASE_RENEW_INTERVAL": 0.5}
    remote = HangingRemote()
    renewer = _Renewer(remote, QuietReporter())
    sent = time.monotonic()
    time.sleep(1.0)  # the answer granting the lease took a second to arrive
    renewer.add(Lease(1, "acme", "v", 1, "me", 0, "", 2.0, sent_at=sent))
    threads = renewer.start()
    try:
        assert renewer.stop.wait(10)
        stopped = time.monotonic()
    finally:
        remote.release.set()
        renewer.close(threads)
    assert stopped - sent < 2.0, "the job ran on after its lease may have expired"
    assert "could not renew" in renewer.reason
