"""Production layout: a gateway that only queues rounds and a separate `perennial learner`.

Killing the learner process mid-round leaves serving untouched; the next learner start marks
the interrupted round failed and can run rounds again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from harness.processes import REPO, start_server
from tests.conftest import ADMIN_KEY
from tests.integration.test_online_loop import ALWAYS, SMALL, give_feedback, wait_round

pytestmark = pytest.mark.integration

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def start_learner(env: dict[str, str], log_path) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_")}
    full.update(env)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "perennial.cli", "learner"],
            env=full,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def group_alive(pgid: int, within_s: float) -> bool:
    """Whether process group ``pgid`` still exists after waiting up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.5)
    return True


def test_killed_learner_process_leaves_serving_untouched(server, engine_url, model_dir, tmp_path):
    data = tmp_path / "prod"
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_LEARNER_MODE": "external",
        "PERENNIAL_LEARNER_INTERVAL_S": "0",
        "PERENNIAL_GATE_SUITE_MAX_ITEMS": "4",
    }
    gateway = start_server(data, {**env, "PERENNIAL_ENGINE_URL": engine_url}, timeout=180)
    learner = None
    try:
        give_feedback(gateway, 6, 300)
        queued = httpx.post(
            gateway.url + "/admin/learner/rounds",
            headers=ADMIN,
            timeout=30,
            json={**SMALL, "iterations": 50, "gate": ALWAYS},
        ).json()
        time.sleep(3)
        assert (
            httpx.get(gateway.url + f"/admin/learner/rounds/{queued['id']}", headers=ADMIN).json()["status"]
            == "queued"
        )

        learner_env = {**env, "PERENNIAL_DATA_DIR": str(data), "PERENNIAL_GATEWAY_URL": gateway.url}
        learner = start_learner(learner_env, data / "learner.log")
        wait_round(gateway, queued["id"], timeout=900, until=("running",))
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # wait until ES is under way, then kill the process
            run = httpx.get(gateway.url + f"/admin/learner/rounds/{queued['id']}", headers=ADMIN).json()
            if run["metrics"].get("phase") == "es":
                break
            time.sleep(1)
        engine_group = int((data / "logs" / "learner-engine.pgid").read_text())
        os.killpg(learner.pid, signal.SIGKILL)
        learner.wait(timeout=30)
        assert httpx.get(gateway.url + "/health").json()["version"] == "base"

        learner = start_learner(learner_env, data / "learner.log")
        run = wait_round(gateway, queued["id"], timeout=120)
        assert run["status"] == "failed" and "interrupted" in run["error"]
        assert httpx.get(gateway.url + "/health").json()["version"] == "base"
        # the next learner cleaned up the engine the killed one left behind (its whole group)
        assert not group_alive(engine_group, within_s=15)
    finally:
        if learner is not None and learner.poll() is None:
            learner.send_signal(signal.SIGTERM)
            try:
                learner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(learner.pid, signal.SIGKILL)
        gateway.stop()
