"""Playwright (sync API) driving Debian's chromium against pytest-django's live server.

Never `playwright install`: the browser is /usr/bin/chromium (`apt-get install -y chromium`).
Screenshots of every main page go to test-artifacts/screenshots/, printed at the end of the run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM runs beside Playwright's event loop

CHROMIUM = os.environ.get("VOLUMES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
_taken: list[Path] = []


@pytest.fixture(scope="session")
def chromium_browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
                    "never `playwright install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Watched:
    """A page whose requests, JS errors and alerts are recorded for assertions."""

    def __init__(self, browser, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 860}, base_url=base_url)
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.htmx_requests: list[tuple[str, str, dict]] = []
        self.upload_requests: list[dict] = []
        self.errors: list[str] = []
        self.alerts: list[str] = []
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # A script or style our Content-Security-Policy blocks is reported on the console only.
        self.csp_violations: list[str] = []
        self.page.on("console", lambda msg: self.csp_violations.append(msg.text)
                     if "Content Security Policy" in msg.text else None)
        self.page.on("dialog", self._dialog)

    def _request(self, request) -> None:
        headers = request.headers
        if "hx-request" in headers:
            self.htmx_requests.append((request.method, request.url, headers))
        if "/files/upload/" in request.url:
            self.upload_requests.append(headers)

    def _dialog(self, dialog) -> None:
        self.alerts.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.wait_for_timeout(150)  # let toasts and dialogs finish their transition
        self.page.screenshot(path=str(path), full_page=True)
        _taken.append(path)

    def login(self, username: str, password: str) -> None:
        self.page.goto("/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(lambda url: "/login/" not in url)

    def logout(self) -> None:
        self.page.click("button[aria-label='Log out']")
        self.page.wait_for_url("**/login/**")

    def check_clean(self) -> None:
        assert not self.errors, f"JavaScript errors: {self.errors}"
        assert not self.csp_violations, f"blocked by the Content-Security-Policy: {self.csp_violations}"
        assert not self.alerts, f"unexpected alerts (script injection?): {self.alerts}"
        missing = [(m, u) for m, u, h in self.htmx_requests if not h.get("x-csrftoken")]
        assert not missing, f"htmx requests without X-CSRFToken: {missing}"
        assert all(h.get("x-csrftoken") for h in self.upload_requests), "an upload went without X-CSRFToken"


@pytest.fixture
def browse(chromium_browser, live_server, settings):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    opened: list[Watched] = []

    def open_page() -> Watched:
        watched = Watched(chromium_browser, live_server.url)
        opened.append(watched)
        return watched

    yield open_page
    for watched in opened:
        watched.context.close()


def pytest_terminal_summary(terminalreporter):
    if _taken:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{len(_taken)} screenshots in {SCREENSHOTS}")
