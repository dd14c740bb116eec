"""Migration 0003 moves each job's old log text into chunks: its first and last 512 KiB, with the cut between."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = ("volumes", "0002_membership_agent_role"), ("volumes", "0003_job_log_chunks")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def test_old_logs_become_head_and_tail_chunks(django_user_model):
    apps = migrate(BEFORE)
    try:
        User, Workspace, Job = (apps.get_model("auth", "User"), apps.get_model("volumes", "Workspace"),
                                apps.get_model("volumes", "Job"))
        user = User.objects.create(username="old")
        ws = Workspace.objects.create(id="old", name="old")
        small = Job.objects.create(workspace=ws, user=user, language="python", content="x", log="short log\n")
        big_text = "".join(f"line {i:07d} é\n" for i in range(100_000))  # ~1.6 MB with 2-byte letters
        big = Job.objects.create(workspace=ws, user=user, language="python", content="x", log=big_text)
        apps = migrate(AFTER)
        Chunk = apps.get_model("volumes", "JobLogChunk")
        assert list(Chunk.objects.filter(job_id=small.pk).values_list("offset", "text")) == [(0, "short log\n")]
        head, tail = Chunk.objects.filter(job_id=big.pk).order_by("offset")
        assert head.offset == 0 and head.text.startswith("line 0000000") and head.size <= 512 * 1024
        assert tail.text.endswith("line 0099999 é\n") and tail.offset + tail.size == len(big_text.encode())
        assert len(head.text.encode()) == head.size and len(tail.text.encode()) == tail.size
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
