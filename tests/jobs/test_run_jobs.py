"""Jobs end to end in this process (the same path as a Celery worker) and through run_script."""
import json
import os
import subprocess
import sys

import pytest

from volumes.models import Job, Volume
from volumes.permissions import set_share
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

from ..engine.helpers import ROOT, worker_env

COUNTER = """# volume: {name} state
import os

def main():
    path = os.path.join("state", "count.txt")
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as fh:
        fh.write(str(count))
    return count
"""


@pytest.fixture
def run(workspace, cache_root, settings):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}

    def run(content, user, args=None, language="python"):
        job = job_submit(workspace, user, language, content, args, enqueue=False)
        return job_run(job.pk)

    return run


def test_a_counter_in_a_volume_counts_across_jobs(run, cast):
    script = COUNTER.format(name="counter")
    first, second = run(script, cast["owner"]), run(script, cast["owner"])
    assert (first.status, first.result, second.result) == ("success", 1, 2), first.log + second.log
    mount = second.mounts.get()
    assert (mount.mode, mount.base_generation, mount.committed_generation) == ("rw", 1, 2)
    assert mount.files_pushed == 1 and mount.lease_token > first.mounts.get().lease_token


def test_dynamic_names_give_independent_volumes_and_workspace_resolves(run, cast):
    script = COUNTER.format(name="$workspace-$args[env]").replace("def main():", "def main(env):")
    jobs = [run(script, cast["owner"], {"env": env}) for env in ["dev", "prod", "dev"]]
    results = [job.result for job in jobs]
    assert results == [1, 1, 2], [job.log for job in jobs]
    assert set(Volume.objects.values_list("name", flat=True)) == {"acme-dev", "acme-prod"}


def test_symlinks_survive_and_deleted_files_stay_deleted(run, cast):
    write = """# volume: links data
import os
def main():
    open("data/a.txt", "w").write("a")
    open("data/b.txt", "w").write("b")
    os.symlink("a.txt", "data/link")
    os.symlink("/etc/hostname", "data/outside")
"""
    change = """# volume: links data
import os
def main():
    os.remove("data/b.txt")
"""
    check = """# volume: links data
import os
def main():
    return {"files": sorted(os.listdir("data")), "link": os.readlink("data/link"),
            "outside": os.readlink("data/outside"), "via": open("data/link").read()}
"""
    assert run(write, cast["owner"]).status == "success"
    assert run(change, cast["owner"]).status == "success"
    result = run(check, cast["owner"]).result
    assert result == {"files": ["a.txt", "link", "outside"], "link": "a.txt", "outside": "/etc/hostname", "via": "a"}


def test_a_read_only_share_reads_but_nothing_is_synced_back(run, cast, volume):
    run(COUNTER.format(name=volume.name), cast["owner"])
    set_share(volume, cast["reader"], "read")
    as_reader = run(COUNTER.format(name=volume.name), cast["reader"])
    if os.geteuid() == 0:  # a job user of its own: the volume is mounted read-only, it read 1 and could not write
        assert as_reader.status == "failure" and "Read-only file system" in as_reader.error, as_reader.log
    else:  # the job runs as the worker: it could write 2, which is discarded
        assert as_reader.status == "success" and as_reader.result == 2, as_reader.log
    assert as_reader.mounts.get().mode == "ro"
    assert run(COUNTER.format(name=volume.name), cast["owner"]).result == 2  # the reader's 2 was not kept
    volume.refresh_from_db()
    assert volume.generation == 2


def test_no_permission_fails_before_anything_is_leased_or_pulled(run, cast, volume):
    set_share(volume, cast["reader"], "read")
    job = run(COUNTER.format(name=volume.name), cast["member"])
    assert job.status == "failure" and "no share on volume 'training-data'" in job.error
    assert "line 1" in job.error
    volume.refresh_from_db()
    assert volume.lease_token == 0


def test_a_failed_job_commits_nothing(run, cast):
    script = """# volume: keep data
def main():
    open("data/partial.txt", "w").write("half")
    raise RuntimeError("boom")
"""
    job = run(script, cast["owner"])
    assert job.status == "failure" and "boom" in job.error
    assert Volume.objects.get(name="keep").generation == 0


def test_a_bad_annotation_fails_naming_the_line(run, cast):
    job = run("# volume: ok data\n# volume: x data2\ndef main(): pass\n", cast["owner"])
    assert job.status == "failure" and "line 2" in job.error
    assert not Volume.objects.exists()


def test_without_volume_storage_the_job_says_where_to_select_it(run, cast, workspace):
    workspace.volume_storage = None
    workspace.save()
    job = run(COUNTER.format(name="c1"), cast["owner"])
    assert job.status == "failure" and "Settings > Storage" in job.error


def test_an_absolute_mount_without_sandbox_is_refused(run, cast):
    job = run("# volume: abs /tmp/abs\ndef main(): pass\n", cast["owner"])
    assert job.status == "failure" and "sandbox" in job.error


def test_a_sandboxed_job_mounts_under_tmp_and_data(run, cast):
    script = """# sandbox
# volume: sb-one /tmp/one
# volume: sb-two /data/two
import os
def main():
    open("/tmp/one/x.txt", "w").write("one")
    open("/data/two/y.txt", "w").write("two")
    return os.getuid()
"""
    job = run(script, cast["owner"])
    assert job.status == "success", job.log
    assert job.result == 65534
    check = """# volume: sb-two two
def main():
    return open("two/y.txt").read()
"""
    assert run(check, cast["owner"]).result == "two"


def test_a_sandboxed_read_only_user_cannot_write(run, cast, volume):
    run(COUNTER.format(name=volume.name), cast["owner"])
    set_share(volume, cast["reader"], "read")
    script = """# sandbox
# volume: training-data state
def main():
    try:
        open("state/count.txt", "w").write("99")
        return "wrote"
    except OSError as exc:
        return type(exc).__name__
"""
    job = run(script, cast["reader"])
    assert job.status == "success" and job.result in ("OSError", "PermissionError"), job.log


@pytest.mark.django_db(transaction=True)
def test_run_script_prints_the_result_last_and_exits_by_outcome(workspace, cast, tmp_path):
    script = tmp_path / "count.py"
    script.write_text(COUNTER.format(name="cli-counter"))
    env = worker_env(VOLUMES_CACHE_DIR=tmp_path / "cache")
    cmd = [sys.executable, "manage.py", "run_script", str(script), "--workspace", "acme", "--user", "owner"]
    first = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1]) == 1
    assert json.loads(second.stdout.strip().splitlines()[-1]) == 2
    assert "leasing volume cli-counter" in first.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("# volume: aa data\ndef main():\n    raise ValueError('nope')\n")
    failed = subprocess.run(cmd[:3] + [str(bad)] + cmd[4:], env=env, cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1 and "nope" in failed.stderr
    assert Job.objects.filter(status="success").count() == 2


TWO_VOLUMES = """# volume: alpha a
# volume: beta b
def main():
    open("a/small.txt", "w").write("small")
    open("b/big.txt", "w").write("x" * 5000)
"""


def test_a_job_whose_second_volume_fails_commits_neither(run, cast, workspace):
    workspace.max_volume_size = 1000
    workspace.save()
    job = run(TWO_VOLUMES, cast["owner"])
    assert job.status == "failure", job.log
    assert "over its limit" in job.error
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 0, "beta": 0}, job.log
    assert not job.mounts.filter(committed_generation__isnull=False).exists()


def test_a_job_over_a_volumes_own_size_limit_fails_saying_how_to_raise_it(run, cast, workspace):
    from volumes.services.volumes import volume_create, volume_set_quota

    volume_set_quota(volume_create(workspace, "beta", owner=cast["owner"]), 1000)
    job = run(TWO_VOLUMES, cast["owner"])
    assert job.status == "failure", job.log
    assert "over its limit of 1,000 bytes" in job.error and "Nothing was committed" in job.error
    assert "volume quota beta SIZE" in job.error and "Size limit on the volume's page" in job.error
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 0, "beta": 0}, job.log


def test_a_job_with_two_read_write_volumes_commits_both(run, cast, workspace):
    job = run(TWO_VOLUMES, cast["owner"])
    assert job.status == "success", job.log
    assert dict(Volume.objects.values_list("name", "generation")) == {"alpha": 1, "beta": 1}
    assert sorted(job.mounts.values_list("committed_generation", flat=True)) == [1, 1]


def test_last_used_moves_on_every_job_that_mounts_the_volume_and_names_it(run, cast, client):
    script = COUNTER.format(name="models")
    writer = run(script, cast["owner"])
    volume = Volume.objects.get(name="models")
    set_share(volume, cast["reader"], "read")
    Volume.objects.filter(pk=volume.pk).update(last_used_at=None, last_used_job=None)
    reader = run("# volume: models state\ndef main():\n    return open('state/count.txt').read()\n", cast["reader"])
    assert (writer.status, reader.status, reader.result) == ("success", "success", "1"), reader.log
    volume.refresh_from_db()
    assert volume.last_used_at is not None and volume.last_used_job_id == reader.pk
    client.force_login(cast["owner"])
    page = client.get(f"/w/{volume.workspace_id}/volumes/models/").content.decode()
    assert f"/jobs/{reader.pk}/" in page and f"job {reader.pk}" in page


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("error, named", [(PermissionError(13, "Permission denied", "cache/v1"), "Permission denied"),
                                          (RecursionError("too deep"), "RecursionError: too deep")])
def test_a_failing_cache_eviction_never_replaces_a_successful_outcome(run, cast, monkeypatch, error, named):
    from volumes.engine.cache import WorkerCache

    monkeypatch.setattr(WorkerCache, "evict", _raise(error))
    job = run(COUNTER.format(name="evict"), cast["owner"])
    assert (job.status, job.result, job.error) == ("success", 1, ""), job.log
    assert "warning: cleaning the worker's cache failed" in job.log and named in job.log, job.log
    assert Volume.objects.get(name="evict").generation == 1


def test_a_failing_lease_release_never_replaces_a_successful_outcome(run, cast, monkeypatch):
    from volumes.engine.remote import DirectRemote

    monkeypatch.setattr(DirectRemote, "release", _raise(OSError(5, "Input/output error")))
    job = run(COUNTER.format(name="release"), cast["owner"])
    assert (job.status, job.result, job.error) == ("success", 1, ""), job.log
    assert "warning: could not release the lease on volume release" in job.log, job.log
    assert "Input/output error" in job.log and "it expires by itself" in job.log
    assert Volume.objects.get(name="release").generation == 1


def test_a_failed_job_keeps_its_failure_when_cleaning_up_fails_too(run, cast, monkeypatch):
    from volumes.engine.cache import WorkerCache
    from volumes.engine.remote import DirectRemote

    monkeypatch.setattr(WorkerCache, "evict", _raise(PermissionError(13, "Permission denied")))
    monkeypatch.setattr(DirectRemote, "release", _raise(OSError(5, "Input/output error")))
    job = run("# volume: broken data\ndef main():\n    raise RuntimeError('boom')\n", cast["owner"])
    assert job.status == "failure" and "boom" in job.error, job.log
    assert "Permission denied" not in job.error and "Input/output" not in job.error
    assert "warning: cleaning the worker's cache failed" in job.log
    assert "warning: could not release the lease on volume broken" in job.log
    assert Volume.objects.get(name="broken").generation == 0


def test_a_waiting_job_logs_the_holder_the_queue_and_the_readers(run, cast, volume, workspace, settings):
    from datetime import timedelta

    from django.utils import timezone

    from volumes.engine import leases
    from volumes.models import JobVolume, VolumePin

    settings.VOLUMES = {**settings.VOLUMES, "LEASE_WAIT_MAX": 0.3}
    lease = leases.try_acquire(volume.pk, "worker-x job 99")
    queued = Job.objects.create(workspace=workspace, user=cast["owner"], language="python", content="x",
                                status=Job.Status.WAITING)
    JobVolume.objects.create(job=queued, volume=volume, volume_name=volume.name, mount_path="data", mode="rw")
    now = timezone.now()
    VolumePin.objects.create(volume=volume, generation=0, holder="reader-1", pinned_at=now,
                             expires_at=now + timedelta(seconds=60))
    job = run(COUNTER.format(name=volume.name), cast["owner"])
    leases.release(lease)
    assert job.status == "failure" and "still held by worker-x job 99" in job.error
    assert "waiting for volume training-data: held by worker-x job 99" in job.log
    assert "; 1 other job waiting for the lease; 1 reader pinned to a generation" in job.log
