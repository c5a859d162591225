"""Session fixtures: one real gateway + vLLM CPU engine for the whole test session.

Tiers: the folder is the tier is the marker. ``tests/unit`` holds pure tests (no engine, no
database server, no Redis: ``make test-unit``); ``tests/integration`` the ones against real
vLLM, PostgreSQL, Redis and HTTP. Each test gets its folder's marker here, so
``-m unit`` / ``-m integration`` select exactly the folders, and a unit test that asks for
the session's gateway fails loudly instead of quietly starting an engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.processes import RunningServer, shared_model_dir, start_server

API_KEYS = ("sk-test-alpha", "sk-test-beta")
ADMIN_KEY = "pk-test-admin"
MAX_BODY = 65536


TIERS = ("unit", "integration")
HERE = Path(__file__).resolve().parent
# Fixtures that start or reach a real engine, database server, Redis or browser.
SERVICE_FIXTURES = {
    "server",
    "client",
    "engine_url",
    "gate_engine_url",
    "pg_url",
    "fresh_pg_url",
    "db_url",
    "private_redis",
    "private_postgres",
    "browser",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        tier = Path(item.fspath).resolve().relative_to(HERE).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit or tests/integration")
        services = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and services:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(services)}: move it to tests/integration")
        item.add_marker(tier)


@pytest.fixture(scope="session")
def model_dir():
    return shared_model_dir()


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_dir) -> RunningServer:
    """The shared gateway (API keys and admin key configured, small body limit)."""
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_API_KEYS": ",".join(API_KEYS),
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_MAX_BODY_BYTES": str(MAX_BODY),
        # generous: a cold engine start (torch.compile) on a busy 2-core machine is slow
        "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
        # rounds only when a test asks for one; a small gate so a round fits in a test
        "PERENNIAL_LEARNER_INTERVAL_S": "0",
        "PERENNIAL_GATE_SUITE_MAX_ITEMS": "8",
        "PERENNIAL_GATE_KL_SAMPLES": "1",
        "PERENNIAL_GATE_KL_MAX_TOKENS": "16",
        # the default: the learner engine starts and scores the base's gate suites at boot
        "PERENNIAL_LEARNER_PREPARE": "true",
        # no PERENNIAL_CHAT_TEMPLATE / PERENNIAL_TOOL_CALL_PARSER: the bundled model's defaults
        # (chatml-tools + pythonic, engine/chat_format.py) turn tool calling on, as for a new user
    }
    running = start_server(tmp_path_factory.mktemp("gateway"), env, timeout=960)
    yield running
    running.stop()


@pytest.fixture
def restores_base(server):
    """For a test that changes the served version: the shared server serves the base again
    afterwards, pass or fail, so one failure does not fail every later test that expects it."""
    yield server
    import httpx

    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    serving = httpx.get(server.url + "/admin/versions", headers=headers, timeout=60).json()["serving"]
    if serving != "base":
        body = {"to": "base", "reason": "test cleanup"}
        back = httpx.post(server.url + "/admin/rollback", json=body, headers=headers, timeout=300)
        assert back.status_code == 200, back.text


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    with OpenAI(base_url=server.base_url, api_key=API_KEYS[0], max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def engine_url(server) -> str:
    """The shared serving engine's own URL (loopback), for tests that drive vLLM directly."""
    import httpx

    status = httpx.get(server.url + "/admin/engine", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    return status.json()["url"]
