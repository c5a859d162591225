"""Fixtures of the gate tests: an engine client on the shared serving engine.

``PERENNIAL_TEST_ENGINE_URL`` points the integration tests at an already running engine
(serving ``smollm2-135m-instruct``) instead of starting the session's gateway; handy while
iterating on suites, never needed in CI.
"""

from __future__ import annotations

import os

import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def gate_engine_url(request) -> str:
    return os.environ.get("PERENNIAL_TEST_ENGINE_URL") or request.getfixturevalue("engine_url")


@pytest.fixture
async def engine(gate_engine_url):
    from server.engine.client import EngineClient

    client = EngineClient(gate_engine_url, timeout_s=600)
    yield client
    await client.aclose()
