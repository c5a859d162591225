"""A second gateway attached to the shared engine; the supervisor restarting a killed engine."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from harness.processes import start_server
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def engine_status(server) -> dict:
    return httpx.get(server.url + "/admin/engine", headers=ADMIN, timeout=10).json()


def test_open_gateway_on_external_engine_generates_its_admin_key(server, tmp_path, model_dir):
    """No API keys: chat is open. No admin key: one is generated and kept in a 0600 file, which
    the console names; the key itself is never printed."""
    engine_url = engine_status(server)["url"]
    env = {"PERENNIAL_MODEL_DIR": str(model_dir), "PERENNIAL_ENGINE_URL": engine_url}
    other = start_server(tmp_path / "open", env, timeout=120)
    try:
        key_file = tmp_path / "open" / "admin_key"
        key = key_file.read_text().strip()
        assert key.startswith("pk-admin-") and oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert key not in other.log_tail(400) and str(key_file) in other.log_tail(400)
        client = openai.OpenAI(base_url=other.base_url, api_key="anything", max_retries=0)
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert reply.choices[0].message.content
        status = httpx.get(other.url + "/admin/engine", headers={"authorization": f"Bearer {key}"}).json()
        assert status["supervised"] is False and status["state"] == "ready"
    finally:
        other.stop()
    # A restart reuses the stored key.
    other = start_server(tmp_path / "open", env, timeout=120)
    try:
        assert (tmp_path / "open" / "admin_key").read_text().strip() == key
        assert key not in other.log_tail(800)
    finally:
        other.stop()


def test_killed_engine_gives_503_then_is_restarted(server, client):
    """Kill the engine: chats get a 503 in the envelope, the supervisor brings it back."""
    before = engine_status(server)
    os.killpg(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    saw_503 = False
    while time.monotonic() < deadline and not saw_503:
        try:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and exc.body["code"] == "engine_unavailable"
            saw_503 = True
        except openai.APIConnectionError:  # pragma: no cover - would be a gateway bug
            raise
    assert saw_503
    assert httpx.get(server.url + "/health").status_code == 503
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = engine_status(server)
        if status["restarts"] > before["restarts"] and status["state"] == "ready":
            break
        time.sleep(1)
    after = engine_status(server)
    assert after["state"] == "ready" and after["restarts"] == before["restarts"] + 1
    assert after["pid"] != before["pid"] and after["url"] == before["url"]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
    )
    assert "Paris" in reply.choices[0].message.content
    # The restarted engine was prepared for hot swaps before it served again.
    ping = httpx.post(after["url"] + "/collective_rpc", json={"method": "perennial_ping"}, timeout=60)
    assert ping.json()["results"][0]["direct_loader"] == "on"
