"""Session fixtures: one real gateway + vLLM CPU engine for the whole test session."""

from __future__ import annotations

import pytest

from tests.support.server import RunningServer, shared_model_dir, start_server

API_KEYS = ("sk-test-alpha", "sk-test-beta")
ADMIN_KEY = "pk-test-admin"
MAX_BODY = 65536


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
    }
    running = start_server(tmp_path_factory.mktemp("gateway"), env, timeout=960)
    yield running
    running.stop()


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
