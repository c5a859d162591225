"""Headless Chromium for the dashboard tests: Debian's /usr/bin/chromium, driven by playwright.

playwright only speaks its protocol to the browser we name (``executable_path``); it never
downloads one. ``make test`` installs the browser first (scripts/chromium.sh). Each launch gets
a fresh temporary profile (playwright's own ``--user-data-dir``), removed on close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work here as root in a container; no network beyond the gateway under test.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


# Module scope, not session: while playwright's sync API is open, its event loop runs in the
# main thread, and other modules' asyncio.run() calls would fail.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/chromium.sh (make test does) to install "
                    "Debian's chromium package")  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page plus what it did: console errors, uncaught exceptions, every request URL."""

    page: object
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser):
    """A fresh browser context (own sessionStorage) and page; fails on any page error."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    seen = Watched(page)
    page.on("console", lambda m: _console(seen, m))
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda r: seen.urls.append(r.url))
    yield seen
    context.close()
    # A CSP violation, a script error or an unexpected failed fetch shows up here.
    assert not seen.errors, seen.errors


def _console(seen: Watched, message) -> None:
    if message.type == "error" and not _expected(message.text):
        seen.errors.append(message.text)


def _expected(text: str) -> bool:
    # Chromium logs every 4xx fetch as a console error; the 401 and 400 cases are on purpose.
    return "Failed to load resource" in text and ("401" in text or "400" in text)
