"""'Use in a script' on a volume: the mount line copies, and Run opens with it; the Jobs tab lists
the volume's runs, whose volume names link back; a run is started again with one click."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from volumes.models import Job, JobVolume
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_use_a_volume_in_a_script_and_rerun_a_job(browse, workspace, cast, django_capture_on_commit_callbacks):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    volume = volume_create(workspace, "features", owner=cast["owner"])
    job = Job.objects.create(workspace=workspace, user=cast["owner"], language="python", status="success",
                             content="# volume: features data\ndef main():\n    return 1\n")
    JobVolume.objects.create(job=job, volume=volume, volume_name="features", mount_path="data", mode="rw")
    me = browse()
    page = me.page
    me.context.grant_permissions(["clipboard-read", "clipboard-write"])
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/features/")
    page.get_by_role("button", name="Copy the mount line").click()
    expect(page.locator("#toasts")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "# volume: features data"
    page.get_by_role("link", name="Open in Run").click()
    expect(page.locator("#id_content")).to_have_value(__import__("re").compile(r"^# volume: features data\n"))

    page.goto(f"/w/{workspace.pk}/volumes/features/")
    page.get_by_role("link", name="Jobs", exact=True).last.click()
    rows = page.locator("#job-rows")
    expect(rows).to_contain_text(f"Job {job.pk}")
    me.shot("volume-jobs-tab")
    rows.get_by_role("link", name="features").click()
    page.wait_for_url(f"**/volumes/features/")
    page.goto(f"/w/{workspace.pk}/jobs/{job.pk}/")
    page.route("**/jobs/run/**", lambda route: route.continue_())
    page.get_by_role("button", name="Run again").click()
    page.wait_for_url(lambda u: u.rstrip("/").split("/")[-1] not in ("", str(job.pk)) and "/jobs/" in u)
    new = Job.objects.latest("pk")
    assert new.pk != job.pk and new.content == job.content
    expect(page.locator("#toasts")).to_contain_text(f"Job {new.pk} runs job {job.pk}'s script again")
    me.check_clean()
