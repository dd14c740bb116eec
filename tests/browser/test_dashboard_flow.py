"""The dashboard in a real browser: what a new user does, start to finish."""
from __future__ import annotations

import io
import os
import re

import pytest
from playwright.sync_api import expect

from volumes.engine import leases
from volumes.models import Job, Volume
from volumes.services import files
from volumes.services.volumes import volume_create

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def people(cast):
    for name in ("owner", "reader", "admin"):
        cast[name].set_password(f"pw-{name}-123")
        cast[name].save()
    return cast


def open_dialog(page, trigger):
    trigger.click()
    dialog = page.locator("dialog#modal[open]")
    expect(dialog).to_be_visible()
    return dialog


def test_a_new_user_manages_volumes_files_shares_and_deletes(browse, workspace, people):
    me = browse()
    page = me.page
    page.goto("/login/")
    me.shot("01-login")
    me.login("owner", "pw-owner-123")
    expect(page.get_by_role("heading", name="Volumes", exact=True)).to_be_visible()
    expect(page.get_by_text("No volumes yet")).to_be_visible()

    # Create a volume: a bad name is explained, a good one opens its page.
    dialog = open_dialog(page, page.get_by_role("link", name="New volume").first)
    dialog.get_by_label("Name").fill("-bad")
    dialog.get_by_role("button", name="Create volume").click()
    expect(dialog.locator(".field-error")).to_contain_text("must start and end")
    dialog.get_by_label("Name").fill("research-data")
    me.shot("02-new-volume-dialog")
    dialog.get_by_role("button", name="Create volume").click()
    page.wait_for_url("**/volumes/research-data/")
    expect(page.get_by_text("This volume is empty")).to_be_visible()

    # Upload two files with the file picker (one generation), then one by drag-and-drop.
    page.set_input_files("input[data-upload-input]", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first line\nsecond line\n"},
        {"name": XSS, "mimeType": "text/plain", "buffer": b"harmless"},
    ])
    expect(page.locator("[data-upload-text]")).to_contain_text("Uploaded 2 files")
    browser = page.locator("#file-browser")
    expect(browser.get_by_role("link", name="notes.txt", exact=True)).to_be_visible()
    expect(browser.get_by_text(XSS, exact=True)).to_be_visible()  # the name shows as text, not as an image
    assert page.locator("#file-browser img").count() == 0
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped"], "dropped.txt", {type: "text/plain"}));
        const zone = document.querySelector("[data-dropzone]");
        zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""")
    expect(browser.get_by_role("link", name="dropped.txt", exact=True)).to_be_visible()
    expect(page.locator("#volume-meta")).to_contain_text("3")  # file count refreshed with the list
    me.shot("03-volume-files")

    # Preview the text file.
    dialog = open_dialog(page, browser.get_by_role("link", name="notes.txt", exact=True))
    expect(dialog.locator(".preview-text")).to_contain_text("second line")
    me.shot("04-preview")
    page.keyboard.press("Escape")
    expect(page.locator("dialog#modal[open]")).to_have_count(0)

    # Share it read-only with the reader, picked from the typeahead.
    dialog = open_dialog(page, page.get_by_role("link", name="Share", exact=True))
    expect(dialog.get_by_text("Open to all members.")).to_be_visible()
    dialog.locator("#share-who").fill("rea")
    dialog.locator(".suggestion", has_text="reader").click()
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(dialog.locator(".share-list")).to_contain_text("reader")
    expect(dialog.locator(".share-list select")).to_have_value("read")
    me.shot("05-share-dialog")
    dialog.get_by_role("button", name="Done").click()

    # History: three generations; restore the first (before the drop).
    page.get_by_role("link", name="History", exact=True).click()
    expect(page.locator("table.history tbody tr")).to_have_count(2)
    me.shot("06-history")
    page.get_by_role("link", name="#1", exact=True).click()
    expect(page.locator(".diff-summary")).to_contain_text("+2 added")
    me.shot("07-history-diff")
    dialog = open_dialog(page, page.get_by_role("link", name="Restore this generation"))
    dialog.get_by_role("button", name="Restore").click()
    page.wait_for_url("**/history/")
    expect(page.locator("#toasts")).to_contain_text("Restored generation 1 as generation 3")
    volume = Volume.objects.get(name="research-data")
    assert volume.generation == 3 and sorted(e.path for e in files.list_folder(volume)) == sorted(["notes.txt", XSS])

    # The volumes table, with its live lease badge.
    page.goto(f"/w/{workspace.pk}/assets/volumes/")
    row = page.locator("tr", has_text="research-data")
    expect(row).to_contain_text("Idle")
    lease = leases.try_acquire(volume.pk, "worker-x job 1")
    expect(row).to_contain_text("In use · worker-x job 1", timeout=6000)
    me.shot("08-volumes-table-leased")

    # A leased volume: write actions are disabled and deletion is refused naming the holder.
    row.get_by_role("link", name="research-data").click()
    expect(page.locator("#lease-banner")).to_contain_text("In use by worker-x job 1")
    expect(page.locator("label[data-write]").first).to_have_attribute("aria-disabled", "true")
    dialog = open_dialog(page, page.get_by_role("link", name="Delete", exact=True))
    dialog.get_by_label("Type").fill("research-data")
    dialog.get_by_role("button", name="Move to trash").click()
    expect(dialog.locator("[data-refused]")).to_contain_text("in use by worker-x job 1")
    me.shot("09-delete-refused-while-leased")
    page.keyboard.press("Escape")
    assert Volume.objects.filter(pk=volume.pk).exists()
    leases.release(lease)
    expect(page.locator("#lease-banner")).not_to_contain_text("In use", timeout=6000)
    expect(page.locator("label[data-write]").first).not_to_have_attribute("aria-disabled", "true")
    me.check_clean()
    me.logout()

    # The reader sees the volume but cannot delete it or write to it.
    other = browse()
    other.login("reader", "pw-reader-123")
    link = other.page.locator("#volume-table").get_by_role("link", name="research-data")
    expect(link).to_be_visible()
    link.click()
    expect(other.page.get_by_text("You have read-only access")).to_be_visible()
    expect(other.page.get_by_role("link", name="Delete", exact=True)).to_have_count(0)
    expect(other.page.locator("input[data-upload-input]")).to_have_count(0)
    other.shot("10-reader-view")
    response = other.page.goto(f"/w/{workspace.pk}/volumes/research-data/delete/")
    assert response.status == 403
    expect(other.page.locator(".error-page")).to_contain_text("may not delete volume")
    other.check_clean()

    # Back as the owner: delete an unleased volume after typing its name.
    me.login("owner", "pw-owner-123")
    volume_create(workspace, "old-scratch", owner=people["owner"])
    page.goto(f"/w/{workspace.pk}/volumes/old-scratch/")
    dialog = open_dialog(page, page.get_by_role("link", name="Delete", exact=True))
    button = dialog.get_by_role("button", name="Move to trash")
    expect(button).to_be_disabled()
    dialog.get_by_label("Type").fill("old-scratch")
    button.click()
    page.wait_for_url(f"**/w/{workspace.pk}/assets/volumes/")
    expect(page.locator("#toasts")).to_contain_text("Volume old-scratch was moved to the trash")
    expect(page.get_by_role("link", name="old-scratch")).to_have_count(0)
    assert not Volume.objects.filter(name="old-scratch").exists()
    page.keyboard.press("/")
    expect(page.locator("[data-search]")).to_be_focused()
    # A careless delete is undone from the Trash: the volume comes back under its name.
    page.goto(f"/w/{workspace.pk}/assets/trash/")
    expect(page.locator("tr[data-trashed='old-scratch']")).to_contain_text("by owner")
    me.shot("10b-trash")
    page.locator("[data-restore='old-scratch']").click()
    page.wait_for_url(f"**/w/{workspace.pk}/volumes/old-scratch/")
    expect(page.locator("#toasts")).to_contain_text("Volume old-scratch was restored")
    assert Volume.objects.filter(name="old-scratch").exists()
    me.check_clean()
    assert me.htmx_requests and me.upload_requests


def test_a_script_runs_from_the_jobs_page_and_its_volume_commits(browse, workspace, people, settings, cache_root,
                                                                 monkeypatch):
    from volumes_site.celery import app as celery_app
    from volumes.services.jobs import worker_name

    settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root}
    # The live server runs the task in its own thread (eager); real worker processes are in tests/jobs.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    me = browse()
    page = me.page
    me.login("admin", "pw-admin-123")
    page.get_by_role("complementary", name="Main navigation").get_by_role("link", name="Jobs").click()
    expect(page.get_by_text("No runs yet")).to_be_visible()
    me.shot("11-jobs-empty")
    page.get_by_role("link", name="Run a script").first.click()
    script = page.locator("#id_content")
    expect(script).to_have_value(re.compile(r"# volume: demo-data data"))
    page.select_option("#id_language", "bash")
    expect(script).to_have_value(re.compile(r"echo \"hello \$1\""))
    page.select_option("#id_language", "python")
    page.fill("#id_args", '{"name": "browser"}')
    me.shot("12-run-a-script")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("#job-live .status-line")).to_contain_text("Success", timeout=30_000)
    expect(page.locator("[data-result]")).to_contain_text('"hello.txt"')
    expect(page.locator("#job-live")).to_contain_text("demo-data")
    expect(page.locator("#job-log")).to_contain_text("volume demo-data")
    me.shot("13-job-run")
    job = Job.objects.get()
    assert job.status == "success" and job.worker == worker_name()  # ran in this process, via Celery
    assert job.worker.endswith(f":{os.getpid()}")
    volume = Volume.objects.get(name="demo-data")
    assert volume.generation == 1 and [e.path for e in files.list_folder(volume)] == ["hello.txt"]

    page.get_by_role("link", name="demo-data").first.click()
    expect(page.locator("#file-browser")).to_contain_text(f"job {job.pk}")  # last writer of hello.txt
    page.get_by_label("Main navigation").get_by_role("link", name="Jobs").click()
    expect(page.locator("#job-rows")).to_contain_text(f"Job {job.pk}")
    me.shot("14-jobs-list")

    page.get_by_role("link", name="Storage").click()
    expect(page.get_by_role("heading", name="Storage", exact=True)).to_be_visible()
    page.get_by_role("button", name="Test connection").first.click()
    expect(page.locator(".test-result").first).to_contain_text("Works")
    dialog = open_dialog(page, page.get_by_role("link", name="Add storage"))
    dialog.get_by_label("Kind").select_option("s3")
    expect(dialog.get_by_label("Bucket")).to_be_visible()
    expect(dialog.get_by_label("Folder", exact=True)).to_be_hidden()
    me.shot("15-storage-add-dialog")
    page.keyboard.press("Escape")
    me.shot("16-storage-settings")
    me.check_clean()



def test_the_share_dialog_is_live_when_it_shows_and_a_late_answer_is_ignored(browse, workspace, people):
    """The dialog opens once htmx has wired its content (typing at once is heard; the focus lists
    the members), and a suggestion list that arrives after a pick does not reopen over the form."""
    volume_create(workspace, "models", owner=people["owner"])
    me = browse()
    page = me.page
    held = []
    page.route("**/principals/?who=rea*", lambda route: held.append(route))
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/models/")
    dialog = open_dialog(page, page.get_by_role("link", name="Share", exact=True))
    expect(dialog.locator(".suggestion", has_text="reader")).to_be_visible()  # asked on focus
    dialog.locator("#share-who").fill("rea")
    page.wait_for_timeout(400)
    assert held, "typing did not ask for suggestions"
    dialog.locator(".suggestion", has_text="reader").click()
    expect(dialog.locator("#share-who")).to_have_value("reader")
    for route in held:  # the answer to "rea" arrives after the pick
        route.continue_()
    page.wait_for_timeout(300)
    expect(dialog.locator(".suggestion")).to_have_count(0)
    dialog.get_by_role("button", name="Share", exact=True).click(timeout=3000)
    expect(dialog.locator(".share-list")).to_contain_text("reader")
    me.check_clean()


def test_file_dialogs_close_cleanly_after_each_action(browse, workspace, people):
    """After a folder is created, a file renamed or deleted, no dialog or backdrop stays open."""
    volume = volume_create(workspace, "docs", owner=people["owner"])
    files.file_put(volume, "a.txt", io.BytesIO(b"a"), user=people["owner"])
    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/docs/")
    browser = page.locator("#file-browser")

    def closed() -> None:
        page.wait_for_timeout(300)  # any late reopening happens within a settle
        expect(page.locator("dialog#modal[open]")).to_have_count(0)
        assert page.evaluate("document.querySelector('dialog#modal').open") is False

    dialog = open_dialog(page, page.get_by_role("link", name="New folder"))
    dialog.get_by_label("Name").fill("reports")
    dialog.locator("button[type=submit]").click()
    expect(browser.get_by_text("reports")).to_be_visible()
    closed()

    dialog = open_dialog(page, page.get_by_label("Rename or move a.txt"))
    dialog.locator("input[name=dst]").fill("b.txt")
    dialog.locator("button[type=submit]").click()
    expect(browser.get_by_role("link", name="b.txt", exact=True)).to_be_visible()
    closed()

    dialog = open_dialog(page, page.get_by_label("Delete b.txt"))
    dialog.locator("button[type=submit]").click()
    expect(browser.get_by_role("link", name="b.txt", exact=True)).to_have_count(0)
    closed()
    me.check_clean()


def test_arrow_keys_on_a_share_change_nothing_until_saved(browse, workspace, people):
    """Moving through the access list with the keyboard must not save or remove a share."""
    from volumes import permissions

    volume = volume_create(workspace, "shared", owner=people["owner"])
    permissions.set_share(volume, people["reader"], "read")
    me = browse()
    page = me.page
    me.login("owner", "pw-owner-123")
    page.goto(f"/w/{workspace.pk}/volumes/shared/")
    dialog = open_dialog(page, page.get_by_role("link", name="Share", exact=True))
    access = dialog.get_by_label("Access of reader", exact=True)
    access.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)
    assert [(s.name, s.access) for s in permissions.shares_of(volume)] == [("reader", "read")]
    access.select_option("write")
    dialog.get_by_role("button", name="Save access of reader").click()
    expect(page.locator("#toasts")).to_contain_text("reader now has read-write access")
    assert [(s.name, s.access) for s in permissions.shares_of(volume)] == [("reader", "write")]
    dialog = page.locator("dialog#modal[open]")
    dialog.get_by_role("button", name="Remove reader").click()
    expect(dialog.get_by_text("Open to all members.")).to_be_visible()
    assert permissions.shares_of(volume) == []
    me.check_clean()
