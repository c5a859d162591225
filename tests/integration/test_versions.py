"""Versions through the admin API on the real engine: gated promotion, forced promotion,
rollback with exact outputs, the audit log, and serving the right version after restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from harness.snapshots import perturbed_snapshot, seed_log_snapshot
from store.retention import drop_weights
from tests.conftest import ADMIN_KEY
from tests.support.versions import insert_version

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PROMPTS = ["What is the capital of France?", "Name a color.", "What is 2 + 2?"]


def admin(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=ADMIN, timeout=120, **kwargs)


def greedy(client) -> tuple[list[str], set[str]]:
    texts, versions = [], set()
    for prompt in PROMPTS:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=24
        )
        reply = raw.parse()
        versions.add(raw.headers["x-perennial-model-version"])
        assert reply.system_fingerprint == f"perennial:{raw.headers['x-perennial-model-version']}"
        texts.append(reply.choices[0].message.content)
    return texts, versions


def add_version(server, model_dir, tmp_path, version_id: str, *, seed: int, promote: bool | None) -> None:
    """A candidate as a round would leave it: snapshot, registry row, gate decision."""
    snapshot = perturbed_snapshot(model_dir, tmp_path / version_id, seed=seed, scale=0.05)
    insert_version(server, version_id, snapshot, promote=promote)


def test_promotion_rollback_and_audit(restores_base, client, model_dir, tmp_path):
    server = restores_base
    # ids tv1/tv2: rounds earlier in the session may have made v1, v2, ...
    listing = admin(server, "GET", "/admin/versions").json()
    assert listing["serving"] == "base" and [v["id"] for v in listing["data"] if v["serving"]] == ["base"]
    base_out, versions = greedy(client)
    assert versions == {"base"}

    add_version(server, model_dir, tmp_path, "tv1", seed=1, promote=False)
    refused = admin(server, "POST", "/admin/versions/tv1/promote")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "gate_not_passed"
    assert "arithmetic dropped" in refused.json()["error"]["message"]
    no_reason = admin(server, "POST", "/admin/versions/tv1/promote", json={"force": True})
    assert no_reason.status_code == 400 and no_reason.json()["error"]["param"] == "reason"
    assert admin(server, "POST", "/admin/versions/v9/promote").status_code == 404

    forced = admin(server, "POST", "/admin/versions/tv1/promote", json={"force": True, "reason": "hotfix"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["serving"] == "tv1" and forced.json()["swap"]["pause_to_resume_s"] < 30
    v1_out, versions = greedy(client)
    assert versions == {"tv1"} and v1_out != base_out
    assert httpx.get(server.url + "/health").json()["version"] == "tv1"
    assert client.models.list().data[0].model_extra["version"] == "tv1"

    back = admin(server, "POST", "/admin/rollback", json={"reason": "regression report"})
    assert back.status_code == 200 and back.json()["serving"] == "base"
    assert greedy(client) == (base_out, {"base"})  # exact outputs of the base again

    add_version(server, model_dir, tmp_path, "tv2", seed=2, promote=True)
    assert admin(server, "POST", "/admin/versions/tv2/promote").status_code == 200
    assert admin(server, "POST", "/admin/rollback", json={"to": "tv1"}).json()["serving"] == "tv1"
    assert greedy(client) == (v1_out, {"tv1"})  # tv1 comes back exactly, checksum verified
    assert admin(server, "POST", "/admin/rollback", json={"to": "tv1"}).status_code == 409

    entries = admin(server, "GET", "/admin/audit").json()["data"]
    actions = [(e["action"], e["target"], e["who"]) for e in reversed(entries)]
    assert actions[-4:] == [
        ("force_promote", "tv1", "admin"),
        ("rollback", "base", "admin"),
        ("promote", "tv2", "admin"),
        ("rollback", "tv1", "admin"),
    ]
    forced_entry = next(e for e in entries if e["action"] == "force_promote")
    assert forced_entry["reason"] == "hotfix" and forced_entry["details"]["from"] == "base"
    versions_now = {v["id"]: v for v in admin(server, "GET", "/admin/versions").json()["data"]}
    assert versions_now["tv1"]["status"] == "promoted" and versions_now["tv1"]["serving"]
    assert versions_now["tv2"]["gate"]["promote"] is True


def test_engine_restart_keeps_serving_the_promoted_version(restores_base, client, model_dir, tmp_path):
    """The supervisor restarts a dead engine from the version it was serving, not the base."""
    server = restores_base
    add_version(server, model_dir, tmp_path, "tv3", seed=3, promote=True)
    assert admin(server, "POST", "/admin/versions/tv3/promote").status_code == 200
    before_out, versions = greedy(client)
    assert versions == {"tv3"}
    status = admin(server, "GET", "/admin/engine").json()
    os.killpg(status["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 900  # a cold compile on a loaded 2-core machine is slow
    while time.monotonic() < deadline:
        now = admin(server, "GET", "/admin/engine").json()
        if now["restarts"] > status["restarts"] and now["state"] == "ready":
            break
        time.sleep(1)
    assert greedy(client) == (before_out, {"tv3"})


def test_a_dropped_snapshot_is_rebuilt_from_its_seed_log_and_serves_the_same(
    restores_base, client, model_dir, tmp_path
):
    """Weights dropped (as the retention policy drops them): the CLI rebuilds them bit for bit,
    and a promotion of a dropped version rebuilds it first and serves the same greedy outputs."""
    server = restores_base
    meta = seed_log_snapshot(model_dir, tmp_path / "tv5", seed=5)
    insert_version(
        server, "tv5", tmp_path / "tv5", promote=True, sha256=meta.sha256, meta=meta.model_dump(mode="json")
    )
    assert admin(server, "POST", "/admin/versions/tv5/promote").status_code == 200
    served_out, versions = greedy(client)
    assert versions == {"tv5"}
    assert admin(server, "POST", "/admin/rollback", json={"to": "base"}).status_code == 200
    recorded = (tmp_path / "tv5" / "model.safetensors").read_bytes()
    row = admin(server, "GET", "/admin/versions/tv5").json()
    assert row["disk"]["stored"] and row["disk"]["seed_log_bytes"] < 4096

    drop_weights(tmp_path / "tv5")
    assert admin(server, "GET", "/admin/versions/tv5").json()["disk"]["stored"] is False
    cli = subprocess.run(
        [sys.executable, "-m", "perennial.cli", "versions", "rebuild", "tv5", "--url", server.url],
        env={**os.environ, "PERENNIAL_ADMIN_KEY": ADMIN_KEY},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr
    assert "rebuilt tv5 from base (1 generation(s), 1 iterations)" in cli.stdout and "verified" in cli.stdout
    assert (tmp_path / "tv5" / "model.safetensors").read_bytes() == recorded

    drop_weights(tmp_path / "tv5")
    promoted = admin(server, "POST", "/admin/versions/tv5/promote")
    assert promoted.status_code == 200, promoted.text
    assert greedy(client) == (served_out, {"tv5"})  # rebuilt, then the normal verified swap
    actions = [
        e["action"] for e in admin(server, "GET", "/admin/audit").json()["data"] if e["target"] == "tv5"
    ]
    assert actions[:2] == ["promote", "rebuild"]  # newest first
    assert admin(server, "POST", "/admin/versions/nope/rebuild").status_code == 404
