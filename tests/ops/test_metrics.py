"""/metrics: the Prometheus text of every process (Celery workers too, in multiprocess mode), for the
monitoring token or an allowed network only."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from volumes.models import Job
from volumes.services.jobs import job_submit

from ..api.helpers import seed
from ..jobs.test_celery_workers import start_worker, stop, wait_for

JOB = """# volume: training-data data
import os

def main():
    with open(os.path.join("data", "out.txt"), "w") as fh:
        fh.write("written by the job " * 100)
    return sorted(os.listdir("data"))
"""


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(figures: dict, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def token(settings):
    settings.VOLUMES = {**settings.VOLUMES, "MONITORING_TOKEN": "m-token", "MONITORING_ALLOW_NETWORKS": ["10.2.0.0/16"]}
    return {"HTTP_AUTHORIZATION": "Bearer m-token"}


@pytest.mark.django_db
def test_metrics_need_the_token_or_an_allowed_network(client, token, cast):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    client.force_login(cast["admin"])  # a workspace admin is not the operator
    assert client.get("/metrics").status_code == 403
    client.logout()
    response = client.get("/metrics", **token)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert "volumes_leases_held" in response.content.decode()
    assert client.get("/metrics", REMOTE_ADDR="10.2.9.9").status_code == 200


@pytest.mark.django_db
def test_live_pinned_readers_are_counted(client, token, volume):
    from datetime import timedelta

    from django.utils import timezone

    from volumes.models import VolumePin

    now = timezone.now()
    for expires in (now + timedelta(seconds=60), now + timedelta(seconds=60), now - timedelta(seconds=1)):
        VolumePin.objects.create(volume=volume, generation=0, holder="w", pinned_at=now, expires_at=expires)
    figures = samples(client.get("/metrics", **token).content.decode())
    assert value(figures, "volumes_pinned_readers") == 2  # the expired pin protects nothing and is not counted
    assert value(figures, "volumes_pinned_volumes") == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_after_real_jobs_on_a_celery_worker_the_metrics_show_them(client, token, workspace, volume, cast, tmp_path,
                                                                   monkeypatch):
    seed(volume, {"seed.txt": b"seeded " * 50}, user=cast["owner"])
    folder = tmp_path / "prometheus"
    folder.mkdir()
    worker = start_worker(tmp_path, "metrics", PROMETHEUS_MULTIPROC_DIR=folder)
    try:
        first = job_submit(workspace, cast["owner"], "python", JOB)
        wait_for(lambda: Job.objects.get(pk=first.pk).is_finished, 120, "the first job")
        second = job_submit(workspace, cast["owner"], "python", JOB)  # same worker: its cache is current
        wait_for(lambda: Job.objects.get(pk=second.pk).is_finished, 120, "the second job")
        # The worker counts a job just after saving its outcome: read the figures before it is killed.
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))  # as run.sh sets it for every process
        wait_for(lambda: value(samples(client.get("/metrics", **token).content.decode()), "volumes_jobs_total",
                               outcome="success") == 2, 30, "the second job's count")
    finally:
        stop(worker)
    assert list(Job.objects.values_list("status", flat=True)) == ["success", "success"]
    figures = samples(client.get("/metrics", **token).content.decode())
    assert value(figures, "volumes_jobs_total", outcome="success") == 2
    assert value(figures, "volumes_job_duration_seconds_count", outcome="success") == 2
    assert value(figures, "volumes_job_duration_seconds_sum", outcome="success") > 0
    assert value(figures, "volumes_lease_wait_seconds_count", outcome="acquired") == 2
    assert value(figures, "volumes_sync_bytes_total", direction="pull") == len(b"seeded " * 50)
    assert value(figures, "volumes_sync_files_total", direction="pull") == 1
    assert value(figures, "volumes_sync_bytes_total", direction="push") == len("written by the job " * 100)
    assert value(figures, "volumes_sync_files_total", direction="skip") >= 2  # the second job's pull
    assert value(figures, "volumes_sync_seconds_count", direction="pull") == 2
    assert value(figures, "volumes_cache_misses_total") == 1 and value(figures, "volumes_cache_hits_total") == 1
    assert value(figures, "volumes_leases_held") == 0
    assert value(figures, "volumes_jobs_in_state", status="queued") == 0


@pytest.mark.django_db(transaction=True)
def test_a_failed_job_a_lease_wait_timeout_a_held_lease_and_an_eviction_are_counted(client, token, workspace, volume,
                                                                                     cast, settings, tmp_path):
    from volumes.engine import leases
    from volumes.runner.run import job_run

    def figures() -> dict:
        return samples(client.get("/metrics", **token).content.decode())

    def run(content: str) -> Job:
        return job_run(job_submit(workspace, cast["owner"], "python", content, enqueue=False).pk)

    before = figures()
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": tmp_path / "cache", "LEASE_WAIT_MAX": 0.2,
                        "CACHE_MAX_BYTES": 1}  # every volume but the one in use is evicted
    lease = leases.try_acquire(volume.pk, "worker-x job 1")
    assert value(figures(), "volumes_leases_held") == 1
    waited = run(JOB)  # the volume stays held: the job gives up after 0.2 s
    leases.release(lease)
    assert waited.status == "failure" and "still held by worker-x job 1" in waited.error
    first = run(JOB.replace("training-data", "first"))
    second = run(JOB.replace("training-data", "second"))  # makes room: the first volume's cache goes
    assert (first.status, second.status) == ("success", "success")
    after = figures()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("volumes_jobs_total", outcome="failure") == 1
    assert grew("volumes_job_duration_seconds_count", outcome="failure") == 1
    assert grew("volumes_lease_wait_seconds_count", outcome="timeout") == 1
    assert grew("volumes_jobs_total", outcome="success") == 2
    assert grew("volumes_cache_evictions_total") >= 1
    assert value(after, "volumes_leases_held") == 0
