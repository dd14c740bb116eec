"""Every page at a phone's width (390 px) and a laptop's (1280 px): nothing scrolls sideways, titles
are readable, long names do not wrap one letter a line. Screenshots of each go to test-artifacts."""
from __future__ import annotations

import io
import struct
import zlib

import pytest

from volumes.models import Job
from volumes.services import files
from volumes.services.jobs import job_log_append
from volumes.services.volumes import volume_create, volume_delete
from volumes.services.workers import worker_heartbeat

from .conftest import SCREENSHOTS

pytestmark = pytest.mark.django_db(transaction=True)

LONG = "a-rather-long-file-name-that-a-real-export-would-have-2024-12-31.parquet"


def pixel(page, x: float, y: float) -> tuple[int, int, int]:
    """The colour on screen at (x, y): a 1x1 screenshot, whose one PNG row needs no unfiltering."""
    png = page.screenshot(clip={"x": x, "y": y, "width": 1, "height": 1})
    data, pos = b"", 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return tuple(zlib.decompress(data)[1:4])


def luminance(rgb) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.fixture
def pages(workspace, cast):
    for name in ("admin",):
        cast[name].set_password("pw-admin-123")
        cast[name].save()
    volume = volume_create(workspace, "model-store-with-a-long-name", owner=cast["admin"])
    files.file_put(volume, f"exports/{LONG}", io.BytesIO(b"x" * 2000), user=cast["admin"])
    files.file_put(volume, "notes.txt", io.BytesIO(b"hello\n"), user=cast["admin"])
    job = Job.objects.create(workspace=workspace, user=cast["admin"], language="python",
                             content="# volume: model-store-with-a-long-name data\ndef main():\n    return 1\n",
                             status="success")
    job_log_append(job.pk, "pulled 2 files\n" + "x" * 300 + "\n")
    worker_heartbeat("a-worker-host-with-a-rather-long-name.internal.example.com:4242", "celery", version="1.0.0",
                     cache_bytes=123456789, cache_max_bytes=10 * 1024**3)
    volume_delete(volume_create(workspace, "old-experiment-scratch-space", owner=cast["admin"]), user=cast["admin"])
    ws, v = workspace.pk, volume.name
    return {
        "home": "/", "volumes": f"/w/{ws}/assets/volumes/", "volume": f"/w/{ws}/volumes/{v}/",
        "folder": f"/w/{ws}/volumes/{v}/?path=exports", "history": f"/w/{ws}/volumes/{v}/history/",
        "volume-jobs": f"/w/{ws}/volumes/{v}/jobs/",
        "versions": f"/w/{ws}/volumes/{v}/files/versions/?path=notes.txt&gen=2",
        "diff": f"/w/{ws}/volumes/{v}/history/2/", "jobs": f"/w/{ws}/jobs/", "job": f"/w/{ws}/jobs/{job.pk}/",
        "run": f"/w/{ws}/jobs/run/", "storage": f"/w/{ws}/settings/storage/",
        "members": f"/w/{ws}/settings/members/", "tokens": "/account/tokens/",
        "workers": f"/w/{ws}/settings/workers/", "trash": f"/w/{ws}/assets/trash/",
        "job-log": f"/w/{ws}/jobs/{job.pk}/log/", "not-found": f"/w/{ws}/volumes/no-such-volume/",
        "api-docs": "/api/docs/",
    }


@pytest.fixture
def public_pages(cast):
    """Pages seen before logging in: the login form and an invite's set-password link."""
    from volumes.services.accounts import password_link_path

    return {"login": "/login/", "set-password": password_link_path(cast["member"])}


def visit(me, pages: dict, public_pages: dict, admin_password: str = "pw-admin-123"):
    """(name, page) for every page: logged in as the admin, then logged out for the public ones."""
    me.login("admin", admin_password)
    for name, path in pages.items():
        me.page.goto(path)
        me.page.wait_for_load_state("networkidle")
        yield name, me.page
    me.page.goto("/")
    me.logout()
    for name, path in public_pages.items():
        me.page.goto(path)
        me.page.wait_for_load_state("networkidle")
        yield name, me.page


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_fits_the_screen_and_its_title_reads(browse, pages, public_pages, width):
    me = browse()
    me.page.set_viewport_size({"width": width, "height": 844 if width == 390 else 860})
    problems = []
    for name, page in visit(me, pages, public_pages):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"layout-{width}-{name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            wide = page.evaluate("""() => [...document.querySelectorAll("body *")]
                .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
                .filter((el) => el.children.length === 0)
                .slice(0, 4).map((el) => el.tagName + "." + el.className + "@" + Math.round(el.getBoundingClientRect().right) + ":" + getComputedStyle(el.parentElement).overflowX)""")
            problems.append(f"{name}: the page scrolls {overflow} px sideways ({', '.join(wide)})")
        title = page.locator("main h1, #main h1").first
        if title.count():
            box = title.bounding_box()
            color = page.evaluate("(el) => getComputedStyle(el).color.match(/\\d+/g).slice(0, 3).map(Number)",
                                  title.element_handle())
            for x in (box["x"] + 1, box["x"] + box["width"] - 2):  # both ends of the title's line
                behind = pixel(page, x, box["y"] + 1)
                if contrast(color, behind) < 3:
                    problems.append(f"{name}: title {color} on {behind} is unreadable")
                    break
        # A long name may wrap, but never into a column a few letters wide.
        for cell in page.locator("table td a, table td code, table td.name-cell > span").all()[:40]:
            box = cell.bounding_box()
            if box and box["width"] < 60 and box["height"] > 60:
                problems.append(f"{name}: {cell.inner_text()[:30]!r} is squeezed to {box['width']:.0f} px wide")
                break
    assert not problems, "\n".join(problems)
    me.check_clean()
