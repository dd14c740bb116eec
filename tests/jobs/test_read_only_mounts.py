"""Read-only mounts: in the sandbox, and as a job user of its own on a root worker, a write fails at once with
EROFS; where the job runs as the worker itself (not root, or root without CAP_SYS_ADMIN) the job log names what
the job changed and says it was discarded. The same script in all."""
import os

import pytest

from volumes.models import Volume
from volumes.permissions import set_share
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

WRITER = """{sandbox}# volume: training-data ref
import os

def main():
    with open("ref/keep.txt", "w") as out:
        out.write("changed by a reader")
    with open("ref/new.txt", "w") as out:
        out.write("new")
    os.remove("ref/gone.txt")
    return sorted(os.listdir("ref"))
"""


@pytest.fixture
def read_only_volume(workspace, cast, volume, settings, cache_root):
    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    seed = job_submit(workspace, cast["owner"], "python",
                      "# volume: training-data ref\ndef main():\n    open('ref/keep.txt', 'w').write('original')\n"
                      "    open('ref/gone.txt', 'w').write('x')\n", enqueue=False)
    assert job_run(seed.pk).status == "success"
    set_share(volume, cast["reader"], "read")
    return volume


def test_a_job_run_as_the_worker_gets_a_log_naming_the_discarded_changes(workspace, cast, read_only_volume,
                                                                          monkeypatch):
    from volumes.runner import identity

    monkeypatch.setattr(identity, "_isolation", False)  # as in a container without CAP_SYS_ADMIN (when root)
    job = job_run(job_submit(workspace, cast["reader"], "python", WRITER.format(sandbox=""), enqueue=False).pk)
    assert job.status == "success" and job.result == ["keep.txt", "new.txt"], job.log
    line = next(line for line in job.log.splitlines() if "read-only for this job" in line)
    assert "its changes were discarded, not committed" in line
    assert "1 path added (new.txt)" in line and "1 path changed (keep.txt)" in line and "1 path deleted (gone.txt)" in line
    assert Volume.objects.get(pk=read_only_volume.pk).generation == 1
    check = job_run(job_submit(workspace, cast["owner"], "python",
                               "# volume: training-data ref\nimport os\ndef main():\n"
                               "    return sorted(os.listdir('ref')), open('ref/keep.txt').read()\n", enqueue=False).pk)
    assert check.result == [["gone.txt", "keep.txt"], "original"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox and job users need a root worker")
@pytest.mark.parametrize("sandbox", [True, False])
def test_in_the_sandbox_or_as_a_job_user_the_same_script_fails_with_erofs(workspace, cast, read_only_volume, sandbox):
    job = job_run(job_submit(workspace, cast["reader"], "python", WRITER.format(sandbox="# sandbox\n" * sandbox),
                             enqueue=False).pk)
    assert job.status == "failure"
    assert "Read-only file system" in job.error and "[Errno 30]" in job.error, job.error
    assert "read-only for this job" not in job.log  # nothing changed, nothing to report
    assert Volume.objects.get(pk=read_only_volume.pk).generation == 1


def test_a_job_that_changes_nothing_in_a_read_only_volume_logs_no_discard(workspace, cast, read_only_volume):
    job = job_run(job_submit(workspace, cast["reader"], "python",
                             "# volume: training-data ref\ndef main():\n    return open('ref/keep.txt').read()\n",
                             enqueue=False).pk)
    assert job.result == "original" and "discarded" not in job.log
