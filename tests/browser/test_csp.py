"""The Content-Security-Policy (no inline script or style) leaves htmx, the dialogs, uploads, the share
typeahead, the job page and the API docs working, with no violation reported by the browser."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from volumes.services.jobs import job_submit

pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_work_under_the_policy_without_violations(browse, workspace, cast, volume):
    cast["owner"].set_password("pw-owner-123")
    cast["owner"].save()
    job = job_submit(workspace, cast["owner"], "python", "def main():\n    return 1\n", enqueue=False)
    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    response = page.goto("/w/acme/volumes/training-data/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.set_input_files("input[data-upload-input]", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first line\n"}])
    expect(page.get_by_role("link", name="notes.txt", exact=True)).to_be_visible()  # the htmx refresh after the upload
    page.get_by_role("link", name="notes.txt", exact=True).click()  # the preview dialog (htmx into a <dialog>)
    dialog = page.locator("dialog#modal[open]")
    expect(dialog).to_contain_text("first line")
    page.keyboard.press("Escape")
    page.goto("/w/acme/volumes/training-data/shares/")
    who = page.get_by_label("User or group").first
    if who.count():
        who.fill("wri")  # the typeahead is an htmx request
        expect(page.get_by_text("writer").first).to_be_visible()
    page.goto(f"/w/acme/jobs/{job.pk}/")
    expect(page.get_by_role("heading", name=f"Job {job.pk}")).to_be_visible()
    page.goto("/w/acme/jobs/run/")
    expect(page.locator("#job-form")).to_be_visible()
    page.wait_for_timeout(300)
    me.check_clean()


def test_the_api_docs_render_under_their_own_policy(browse, workspace, cast):
    cast["admin"].set_password("pw-admin-123")
    cast["admin"].save()
    me = browse()
    me.login("admin", "pw-admin-123")
    me.page.goto("/api/docs/")
    expect(me.page.locator(".swagger-ui .information-container")).to_be_visible()
    assert not me.errors and not me.csp_violations, me.csp_violations
