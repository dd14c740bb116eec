"""Prometheus metrics (prometheus-client). Counters and histograms are kept by the process that does
the work; with PROMETHEUS_MULTIPROC_DIR set (scripts/run.sh sets it under the data folder) every web
and Celery process writes them to files there and /metrics adds them all up. Figures that live in the
database (leases held, jobs by status) are read from it at each scrape.

No Django import at module level: the engine records into these from any process."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

LEASE_WAIT = Histogram("volumes_lease_wait_seconds", "Time from asking for a volume's lease to getting it (or "
                       "giving up)", ["outcome"], buckets=SECONDS)
SYNC_SECONDS = Histogram("volumes_sync_seconds", "Seconds per sync of one volume", ["direction"], buckets=SECONDS)
SYNC_BYTES = Counter("volumes_sync_bytes", "Bytes transferred by syncs", ["direction"])
SYNC_FILES = Counter("volumes_sync_files", "Files pulled, pushed, or skipped as unchanged", ["direction"])
JOBS = Counter("volumes_jobs", "Finished jobs by outcome (success, failure, cancelled, lost)", ["outcome"])
JOB_SECONDS = Histogram("volumes_job_duration_seconds", "Seconds from a job's start to its end", ["outcome"],
                        buckets=SECONDS)
CACHE_HITS = Counter("volumes_cache_hits", "Pulls that found the worker cache already at the leased generation")
CACHE_MISSES = Counter("volumes_cache_misses", "Pulls that had to bring the worker cache up to date")
CACHE_EVICTIONS = Counter("volumes_cache_evictions", "Volumes evicted from a worker cache")
GC_DELETED = Counter("volumes_gc_objects_deleted", "Objects deleted by the garbage collector", ["kind"])
AGENT_PROXY_BYTES = Counter("volumes_agent_proxy_bytes", "Blob bytes agent workers moved through this server",
                            ["direction"])


def observe_sync(direction: str, stats, seconds: float) -> None:
    """One pull or push of one volume (direction "pull" or "push") with its SyncStats."""
    SYNC_SECONDS.labels(direction).observe(seconds)
    if direction == "pull":
        SYNC_BYTES.labels("pull").inc(stats.bytes_pulled)
        SYNC_FILES.labels("pull").inc(stats.files_pulled)
        SYNC_FILES.labels("skip").inc(stats.files_skipped)
    else:
        SYNC_BYTES.labels("push").inc(stats.bytes_pushed)
        SYNC_FILES.labels("push").inc(stats.files_pushed)


def observe_job(outcome: str, seconds: float | None) -> None:
    JOBS.labels(outcome).inc()
    if seconds is not None and seconds >= 0:
        JOB_SECONDS.labels(outcome).observe(seconds)


class DatabaseCollector:
    """Figures read from the database at scrape time: the same on every web server."""

    def collect(self):
        from django.db.models import Count
        from django.db.models.functions import Now

        from ..models import Job, Volume, VolumePin

        held = GaugeMetricFamily("volumes_leases_held", "Volumes whose lease is held right now")
        held.add_metric([], Volume.objects.filter(lease_expires_at__gt=Now()).count())
        yield held
        live = VolumePin.objects.filter(expires_at__gt=Now())
        readers = GaugeMetricFamily("volumes_pinned_readers", "Read-only jobs holding a live pin on a generation")
        readers.add_metric([], live.count())
        yield readers
        pinned = GaugeMetricFamily("volumes_pinned_volumes", "Volumes with at least one live reader's pin")
        pinned.add_metric([], live.values("volume_id").distinct().count())
        yield pinned
        jobs = GaugeMetricFamily("volumes_jobs_in_state", "Jobs by current status (not finished)", labels=["status"])
        counts = dict(Job.objects.exclude(status__in=Job.FINISHED).values_list("status").annotate(n=Count("pk")))
        for status in (Job.Status.QUEUED, Job.Status.WAITING, Job.Status.RUNNING):
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs


def render() -> tuple[bytes, str]:
    """The exposition text of every process (multiprocess mode) or of this one, plus the database's figures."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = CollectorRegistry()
    if path:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """This process's own metrics, when not in multiprocess mode."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()
