"""Accessibility: axe-core (from .tools, installed by scripts/install_tools.sh, never a CDN) over
every page finds no serious or critical violation; everything is reachable by keyboard with a
visible focus; dialogs keep focus inside and give it back to what opened them."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .test_layout import pages, public_pages, visit  # noqa: F401  (the same page list as the layout test)

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / "axe-core" / "axe.min.js"


def axe_problems(page) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated through DevTools: our CSP does not apply to it
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.filter((v) => ["serious", "critical"].includes(v.impact))
            .map((v) => v.id + " (" + v.impact + "): " + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | "));
    }""")
    return result


def test_axe_finds_nothing_serious_on_any_page(browse, pages, public_pages):  # noqa: F811
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/install_tools.sh (it installs axe-core into .tools)")
    me = browse()
    page = me.page
    problems = []
    # Not ours to judge: the raw log is text/plain, and the API docs are the vendored Swagger UI.
    for name, shown in visit(me, {k: v for k, v in pages.items() if k not in ("job-log", "api-docs")}, public_pages):
        problems += [f"{name}: {p}" for p in axe_problems(shown)]
    # A dialog open, too.
    me.login("admin", "pw-admin-123")
    page.goto(pages["volume"])
    page.get_by_role("link", name="Share", exact=True).click()
    expect(page.locator("dialog#modal[open]")).to_be_visible()
    problems += [f"share dialog: {p}" for p in axe_problems(page)]
    assert not problems, "\n".join(problems)


def test_focus_is_visible_and_dialogs_trap_and_restore_it(browse, pages):  # noqa: F811
    me = browse()
    page = me.page
    me.login("admin", "pw-admin-123")
    page.goto(pages["volume"])
    # Tab from the top: the skip link first, and every focused element shows an outline or ring.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    for _ in range(12):
        page.keyboard.press("Tab")
        style = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
            return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }""")
        assert style[0] != "none" and style[1] != "0px" or style[2] != "none", \
            f"no visible focus on {page.evaluate('document.activeElement.outerHTML.slice(0, 80)')}"
    # The delete dialog: focus inside, Tab stays inside, Escape gives focus back to the opener.
    opener = page.get_by_role("link", name="Delete", exact=True)
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#modal[open]")
    expect(dialog).to_be_visible()
    where = ("() => [document.activeElement.outerHTML.slice(0, 60), document.querySelectorAll('#share-who').length,"
             " document.querySelector('dialog#modal').open]")
    for _ in range(15):
        page.keyboard.press("Tab")
        try:  # a list refreshed under the focus hands it back within a settle
            page.wait_for_function("document.querySelector('dialog#modal').contains(document.activeElement)",
                                   timeout=1000)
        except Exception:
            pytest.fail(f"focus left the open dialog: {page.evaluate(where)} {page.url}")
    page.keyboard.press("Escape")
    if dialog.count():  # the first Escape closed the suggestion list the focus was in
        page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()
    me.check_clean()


FOCUS_STATE = """() => { const el = document.activeElement, s = getComputedStyle(el), box = el.getBoundingClientRect();
    return {html: el.outerHTML.slice(0, 90), body: el === document.body,
            visible: box.width > 0 && box.height > 0 && s.visibility !== "hidden",
            ring: (s.outlineStyle !== "none" && s.outlineWidth !== "0px") || s.boxShadow !== "none"}; }"""


def test_every_page_can_be_walked_with_tab_and_always_shows_where_the_focus_is(browse, pages,  # noqa: F811
                                                                                public_pages):  # noqa: F811
    me = browse()
    problems = []
    for name, page in visit(me, {k: v for k, v in pages.items() if k not in ("job-log", "api-docs")}, public_pages):
        seen = set()
        for _ in range(60):  # every control of the page, or the first 60
            page.keyboard.press("Tab")
            state = page.evaluate(FOCUS_STATE)
            if state["body"] or state["html"] in seen:
                break  # round the page and back
            seen.add(state["html"])
            if not state["visible"]:
                problems.append(f"{name}: the focus went to something not on screen: {state['html']}")
            elif not state["ring"]:
                problems.append(f"{name}: no visible focus on {state['html']}")
        if len(seen) < 2:
            problems.append(f"{name}: Tab reaches {len(seen)} control(s)")
    assert not problems, "\n".join(problems[:20])
    me.check_clean()
