"""The scheduler queues a round only once enough new feedback arrived; it leaves the database's
schema to Alembic (no job-store table); a round that cannot start its engine fails cleanly."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from harness.processes import start_server
from tests.conftest import ADMIN_KEY
from tests.integration.test_online_loop import chat, post

pytestmark = pytest.mark.integration

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def rounds(gateway) -> list[dict]:
    return httpx.get(gateway.url + "/admin/learner/rounds", headers=ADMIN, timeout=30).json()["data"]


def test_scheduled_round_needs_enough_feedback(engine_url, model_dir, tmp_path):
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ENGINE_URL": engine_url,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_LEARNER_INTERVAL_S": "2",
        "PERENNIAL_LEARNER_MIN_FEEDBACK": "3",
        # the learner engine cannot start: the round must fail without touching serving
        "PERENNIAL_LEARNER_ENGINE_ARGS": "--no-such-vllm-flag",
    }
    gateway = start_server(tmp_path / "sched", env, timeout=180)
    try:
        for i in range(2):
            cid, _, _ = chat(gateway, f"What is {i} + 5?")
            post(gateway, "/v1/feedback", {"completion_id": cid, "label": "up"}, headers={})
        time.sleep(8)  # several scheduler ticks
        assert rounds(gateway) == []

        cid, _, _ = chat(gateway, "What is 9 + 5?")
        post(gateway, "/v1/feedback", {"completion_id": cid, "label": "down"}, headers={})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not [r for r in rounds(gateway) if r["status"] == "failed"]:
            time.sleep(1)
        runs = rounds(gateway)
        assert len(runs) == 1 and runs[0]["trigger"] == "schedule", runs
        assert runs[0]["status"] == "failed" and runs[0]["error"]
        assert httpx.get(gateway.url + "/health").json()["version"] == "base"
        with sqlite3.connect(tmp_path / "sched" / "perennial.db") as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "alembic_version" in tables and not any(t.startswith("apscheduler") for t in tables)
        time.sleep(6)  # a failed round consumed nothing, but is not retried on every tick
        assert len(rounds(gateway)) == 1
    finally:
        gateway.stop()


def test_a_round_without_disk_room_fails_cleanly_and_health_says_so(engine_url, model_dir, tmp_path):
    """min_free_disk_gb beyond any disk: the round fails before it starts an engine or writes
    anything, with the reason stored; serving is untouched; /health, /metrics, /admin/store tell."""
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ENGINE_URL": engine_url,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_LEARNER_INTERVAL_S": "0",
        "PERENNIAL_MIN_FREE_DISK_GB": "1e9",
    }
    gateway = start_server(tmp_path / "full", env, timeout=180)
    try:
        health = httpx.get(gateway.url + "/health").json()
        assert health["disk"]["low"] is True and health["disk"]["free_bytes"] > 0
        assert "perennial_data_disk_free_bytes" in httpx.get(gateway.url + "/metrics").text
        store = httpx.get(gateway.url + "/admin/store", headers=ADMIN, timeout=30).json()["disk"]
        assert (
            store["versions"]["base"]["weights_bytes"] > 100e6
            and store["retention"]["keep"]["base"] == "base"
        )
        cid, _, _ = chat(gateway, "What is 2 + 5?")
        post(
            gateway,
            "/v1/feedback",
            {"completion_id": cid, "reference": "7", "verifier": "number"},
            headers={},
        )
        queued = httpx.post(gateway.url + "/admin/learner/rounds", json={}, headers=ADMIN, timeout=30)
        assert queued.status_code in (200, 202), queued.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and rounds(gateway)[0]["status"] in ("queued", "running"):
            time.sleep(0.5)
        run = rounds(gateway)[0]
        assert run["status"] == "failed" and "disk:" in run["error"] and "min_free_disk_gb" in run["error"]
        assert httpx.get(gateway.url + "/health").json()["version"] == "base"
        assert not (tmp_path / "full" / "versions").exists() or not any(
            (tmp_path / "full" / "versions").iterdir()
        )
    finally:
        gateway.stop()
