"""Fixtures of the integration tests: real PostgreSQL and Redis, SQLite files, the shared
serving engine, an engine client, and headless Chromium for the dashboard.

Every test run gets its own Postgres database (``perennial_t_<hex>`` on the shared server,
dropped at the end) and every test its own Redis key prefix (keys deleted at the end), so runs
and engineers never see each other's rows. Fault tests use private instances
(``tests/support/services.py``).

``PERENNIAL_TEST_ENGINE_URL`` points the engine tests at an already running engine (serving
``smollm2-135m-instruct``) instead of starting the session's gateway; handy while iterating
on suites, never needed in CI.

The browser is Debian's /usr/bin/chromium, driven by playwright, which only speaks its protocol
to the browser we name (``executable_path``) and never downloads one. ``make test`` installs
the browser first (scripts/chromium.sh). Each launch gets a fresh temporary profile.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.processes import SERVED_MODEL
from harness.stores import PG_SERVER, REDIS_URL, create_database, delete_prefix, drop_database
from store.db import upgrade
from tests.conftest import ADMIN_KEY
from tests.support.services import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="session")
def pg_url():
    """A migrated Postgres database for this test session."""
    name = f"perennial_t_{uuid.uuid4().hex[:10]}"
    url = create_database(PG_SERVER, name)
    upgrade(url)
    yield url
    drop_database(PG_SERVER, name)


@pytest.fixture
def fresh_pg_url():
    """An empty (not migrated) Postgres database for one test."""
    name = f"perennial_t_{uuid.uuid4().hex[:10]}"
    yield create_database(PG_SERVER, name)
    drop_database(PG_SERVER, name)


@pytest.fixture
def sqlite_url(tmp_path):
    """A migrated SQLite file for one test."""
    url = f"sqlite:///{tmp_path / 'perennial.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """The same test on SQLite and on Postgres (both migrated)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test on the shared Redis; its keys are deleted afterwards."""
    prefix = f"ptest-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(REDIS_URL, prefix)


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def private_postgres():
    """A private cluster for the module; tests stop/start it. Migrated ``postgres`` database."""
    server = PrivatePostgres().init()
    server.start()
    upgrade(server.url)
    yield server
    server.close()


@pytest.fixture(scope="session")
def engine_url(request) -> str:
    """The shared serving engine (started by the root ``server`` fixture), or, to iterate on
    these tests without an engine start per run, the vLLM server at
    ``PERENNIAL_TEST_ENGINE_URL`` (e.g. the engine of a ``perennial serve`` kept running)."""
    given = os.environ.get("PERENNIAL_TEST_ENGINE_URL")
    if given:
        return given
    server = request.getfixturevalue("server")
    status = httpx.get(server.url + "/admin/engine", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    return status.json()["url"]


# --- an engine client on the shared serving engine ----------------------------------------

MODEL = SERVED_MODEL


@pytest.fixture(scope="session")
def gate_engine_url(request) -> str:
    return os.environ.get("PERENNIAL_TEST_ENGINE_URL") or request.getfixturevalue("engine_url")


@pytest.fixture
async def engine(gate_engine_url):
    from engine.client import EngineClient

    client = EngineClient(gate_engine_url, timeout_s=600)
    yield client
    await client.aclose()


# --- headless Chromium for the dashboard tests -------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work here as root in a container; no network beyond the gateway under test.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: while playwright's sync API is open, its event loop runs in the
# main thread, and other modules' asyncio.run() calls would fail.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/chromium.sh (make test does) to install "
            "Debian's chromium package"
        )
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
