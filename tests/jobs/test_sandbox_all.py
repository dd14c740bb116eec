"""VOLUMES_SANDBOX_ALL: every job runs under nsjail; where nsjail cannot run, a job that must be
sandboxed fails with a message saying why and never runs unsandboxed."""
import os
import uuid

import pytest

from volumes.models import Job
from volumes.runner.run import job_run
from volumes.services.jobs import job_prepare, job_submit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox tests run as root")

PROBE = """# volume: boxed-data data
import os

def main(marker):
    open(marker, "w").write("the script ran on the host")  # only /tmp of the sandbox when sandboxed
    with open("data/count.txt", "a") as out:
        out.write("x")
    return {"uid": os.getuid(), "cwd": os.getcwd(), "marker_seen_from_inside": os.path.exists(marker),
            "count": open("data/count.txt").read()}
"""


@pytest.fixture
def sandbox_all(settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root, "SANDBOX_ALL": True}


@pytest.fixture
def marker(tmp_path):
    return f"/tmp/volumes-sandbox-all-{uuid.uuid4().hex}"


def test_with_sandbox_all_an_unannotated_job_runs_in_the_sandbox_and_its_relative_mount_works(
        workspace, cast, sandbox_all, marker):
    job = job_run(job_submit(workspace, cast["owner"], "python", PROBE, {"marker": marker}, enqueue=False).pk)
    assert job.status == "success", job.log
    assert job.result == {"uid": 65534, "cwd": "/tmp", "marker_seen_from_inside": True, "count": "x"}
    assert not os.path.exists(marker)  # written to the sandbox's own /tmp, not the host's
    assert job.mounts.get().committed_generation == 1
    assert job_prepare(job)[1] is True  # what an agent is told when it claims the job


@pytest.mark.parametrize("how", ["setting", "annotation"])
def test_where_nsjail_cannot_run_a_job_that_must_be_sandboxed_fails_and_never_runs(
        workspace, cast, settings, cache_root, monkeypatch, marker, how):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root, "SANDBOX_ALL": how == "setting"}
    monkeypatch.setenv("VOLUMES_NSJAIL", "/nonexistent/nsjail")
    script = ("# sandbox\n" if how == "annotation" else "") + PROBE
    job = job_run(job_submit(workspace, cast["owner"], "python", script, {"marker": marker}, enqueue=False).pk)
    assert job.status == "failure"
    assert "must run in the sandbox" in job.error and "cannot run on this worker" in job.error
    assert "/nonexistent/nsjail" in job.error and "was not run" in job.error
    assert ("VOLUMES_SANDBOX_ALL is on" in job.error) is (how == "setting")
    assert not os.path.exists(marker)
    assert job.script_started_at is None and "leasing volume" not in job.log
    assert Job.objects.get(pk=job.pk).mounts.get().lease_token is None
