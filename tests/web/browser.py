"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for console tests and benches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = os.environ.get("CODEBLUE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def available() -> bool:
    return os.path.exists(CHROMIUM)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, url: str, token: str, *, width: int = 1280, height: int = 900) -> Any:
    """A new browser context signed in to the console through the login form; returns its page."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.goto(f"{url}/console/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console/incidents")
    return page


def wait_live(page: Any) -> None:
    """Wait until the page's SSE stream is connected (the badge says live)."""
    page.wait_for_selector("#live[data-state=on]", timeout=15_000)
