"""The ``perennial`` client commands against the real shared server: chat, feedback, versions,
a gated promote and a rollback through a real hot swap, suites, runs (a real round followed to
its end with progress), exit codes and messages; one run as a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from clients import Perennial
from harness.processes import REPO
from harness.snapshots import perturbed_snapshot
from perennial.cli import main
from tests.conftest import ADMIN_KEY, API_KEYS
from tests.support.versions import insert_version
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def cli(server):
    """Run a client command against the shared server (keys from the environment, as users do)."""
    env = {"PERENNIAL_URL": server.url, "PERENNIAL_API_KEY": API_KEYS[1], "PERENNIAL_ADMIN_KEY": ADMIN_KEY}

    def invoke(*args: str, **env_overrides: str | None):
        return CliRunner(env={**env, **env_overrides}).invoke(main, list(args))

    return invoke


def test_chat_prints_reply_then_id_and_version(cli):
    result = cli("chat", PROMPT, "--temperature", "0", "--max-tokens", "16")
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout
    assert re.fullmatch(r"completion chatcmpl-[0-9a-f]{32}  version base  tokens \d+\+\d+\n", result.stderr)
    data = json.loads(cli("chat", PROMPT, "--temperature", "0", "--max-tokens", "16", "--json").stdout)
    assert data["text"] == result.stdout.rstrip("\n") and data["version"] == "base"
    streamed = cli("chat", PROMPT, "--temperature", "0", "--max-tokens", "16", "--stream")
    assert streamed.exit_code == 0 and streamed.stdout == result.stdout


def test_feedback_commands(cli, tmp_path):
    reply = json.loads(cli("chat", PROMPT, "--max-tokens", "8", "--json").stdout)
    cid = reply["id"]
    up = cli("feedback", cid, "--up", "--task", "capitals", "--idempotency-key", f"cli-{cid}")
    assert up.exit_code == 0 and re.fullmatch(rf"fb-[0-9a-f]{{32}} on {cid}\n", up.stdout)
    again = cli("feedback", cid, "--up", "--task", "capitals", "--idempotency-key", f"cli-{cid}")
    assert again.stdout == up.stdout.replace("\n", "  (replayed: stored before)\n")
    reused = cli("feedback", cid, "--down", "--idempotency-key", f"cli-{cid}")
    assert reused.exit_code == 1 and reused.stderr.startswith("error 409 idempotency_key_reused:")
    items = tmp_path / "items.jsonl"
    items.write_text(
        json.dumps({"completion_id": cid, "reference": "Paris", "verifier": "contains"})
        + "\n"
        + json.dumps({"completion_id": cid, "reward": 0.5})
        + "\n"
    )
    batch = cli("feedback", "--batch", str(items))
    assert batch.exit_code == 0 and batch.stdout.startswith("stored 2 feedback item(s): fb-")
    number = cli("feedback", cid, "--reference", "42", "--verifier", '{"type": "number"}')
    assert number.exit_code == 0, number.output
    shown = eventually(
        lambda: json.loads(cli("feedback", cid, "--show", "--json").stdout), lambda rows: len(rows) >= 4
    )
    assert len(shown) == 4 and {f["label"] for f in shown} >= {"up"}
    bad = cli("feedback", cid, "--reference", "x", "--verifier", "nonsense")
    assert bad.exit_code == 1 and bad.stderr.startswith("error 400 invalid_value: verifier")
    missing = cli("feedback", "chatcmpl-" + "e" * 32, "--up")
    assert missing.exit_code == 1 and "completion_not_found" in missing.stderr


def test_versions_and_a_wrong_admin_key(cli):
    listing = cli("versions")
    assert listing.exit_code == 0 and listing.stdout.splitlines()[0].split() == [
        "VERSION",
        "STATUS",
        "PARENT",
        "GATE",
        "CREATED",
        "DISK",
    ]
    assert re.search(r"^\*\s+base\s+promoted\s.*\d+ MB\s*$", listing.stdout, re.M), listing.stdout
    assert json.loads(cli("versions", "--json").stdout)["serving"] == "base"
    assert "status    promoted" in cli("versions", "base").stdout
    unknown = cli("versions", "nope")
    assert unknown.exit_code == 1 and unknown.stderr == "error 404 version_not_found: no version 'nope'\n"
    wrong = cli("versions", "--admin-key", "pk-wrong")
    assert wrong.exit_code == 1 and wrong.stderr == "error 401 invalid_api_key: invalid admin key\n"
    assert wrong.stdout == ""


def add_candidate_version(server, model_dir, tmp_path, version_id: str) -> None:
    """A candidate the gate refused, as a round would leave it: snapshot, registry row, decision."""
    snapshot = perturbed_snapshot(model_dir, tmp_path / version_id, seed=7, scale=0.05)
    insert_version(server, version_id, snapshot, promote=False)


def test_gated_promote_then_rollback(server, model_dir, tmp_path, cli):
    version = f"cli-{uuid.uuid4().hex[:8]}"  # not v<n>: never collides with the learner's ids
    add_candidate_version(server, model_dir, tmp_path, version)
    listed = cli("versions").stdout
    assert re.search(rf"^   {version}\s+candidate\s+base\s+fail: suite arithmetic dropped", listed, re.M), (
        listed
    )
    refused = cli("promote", version)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        f"error 409 gate_not_passed: {version} is not approved by the gate "
        "(suite arithmetic dropped 0.05 > tolerance 0.02)"
    )
    try:
        forced = cli("promote", version, "--force", "--reason", "cli test")
        assert forced.exit_code == 0, forced.output
        assert re.fullmatch(
            rf"now serving {version} \(was base\); engine paused \d+\.\d\d s\n", forced.stdout
        )
        with Perennial(server.url, api_key=API_KEYS[0]) as sdk:
            assert sdk.chat(PROMPT, temperature=0, max_tokens=8).version == version
    finally:
        back = cli("rollback", "--to", "base", "--reason", "cli test done", "--json")
    assert back.exit_code == 0 and json.loads(back.stdout)["serving"] == "base"
    again = cli("rollback", "--to", "base")
    assert again.exit_code == 1 and again.stderr.startswith("error 409 already_serving:")
    with Perennial(server.url, admin_key=ADMIN_KEY) as sdk:
        audit = sdk.admin.audit(limit=2)
        assert [(e.action, e.target, e.reason) for e in audit] == [
            ("rollback", "base", "cli test done"),
            ("force_promote", version, "cli test"),
        ]
        assert sdk.admin.version(version).status == "promoted"


def test_suites_commands(cli, tmp_path):
    name = f"cli_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "suite.jsonl"
    path.write_text('{"id": "a", "prompt": "What is 1 + 1?", "reference": "2", "verifier": "number"}\n')
    added = cli("suites", "add", str(path), "--name", name)
    assert added.exit_code == 0 and added.stdout == f"suite {name} v1: 1 items, enabled\n"
    listed = cli("suites", "list").stdout
    assert re.search(rf"^{name}\s+1\s+{name}\s+operator\s+1\s+yes$", listed, re.M), listed
    removed = cli("suites", "remove", name)
    assert removed.exit_code == 0 and removed.stdout == f"disabled {name} v1\n"
    assert not next(s for s in json.loads(cli("suites", "list", "--json").stdout) if s["name"] == name)[
        "enabled"
    ]
    assert cli("suites", "remove", f"{name}_x").exit_code == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x", "reference": "y", "verifier": "number", "extra": 1}\n')
    refused = cli("suites", "add", str(bad), "--name", f"{name}_bad")
    assert refused.exit_code == 1 and refused.stderr.startswith("error 400 invalid_suite:")


def test_a_real_round_followed_to_its_end(server, cli):
    """A tiny round the gate must reject, triggered and followed with progress lines."""
    with Perennial(server.url, api_key=API_KEYS[0]) as sdk:
        for a in range(4):
            reply = sdk.chat(
                f"What is {a + 21} + {a + 32}? Reply with only the number.", temperature=0, max_tokens=8
            )
            sdk.feedback(reply.id, reference=str(2 * a + 53), verifier="number", task="addition")
    time.sleep(6)  # the learner takes feedback that has settled (5 s)
    result = cli(
        "rounds",
        "trigger",
        "--iterations",
        "1",
        "--population",
        "2",
        "--minibatch",
        "2",
        "--max-tokens",
        "4",
        "--sigma",
        "0.02",
        "--alpha",
        "0.02",
        "--gate-min-gain",
        "-1",
        "--gate-margin",
        "-1",
        "--gate-max-total-drop",
        "1",
        "--wait",
        "--poll",
        "1",
        "--wait-timeout",
        "1500",
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    round_id = int(re.fullmatch(r"round (\d+) queued", lines[0]).group(1))
    assert any(re.fullmatch(rf"round {round_id}: es iteration [01]/1", line) for line in lines), lines
    assert lines[-1] == f"round {round_id}: succeeded"
    assert re.search(r"^decision\s+rejected$", result.stdout, re.M) and "fail: " in result.stdout
    shown = json.loads(cli("rounds", "show", str(round_id), "--json").stdout)
    assert shown["decision"] == "rejected" and len(shown["iterations"]) == 1
    assert shown["gate"]["promote"] is False and shown["gate"]["reasons"]
    listed = cli("rounds", "list").stdout.splitlines()
    assert listed[0].split()[:3] == ["ROUND", "STATUS", "DECISION"]
    assert re.match(rf"{round_id}\s+succeeded\s+rejected\s+admin\s+base\s+v\d+", listed[1]), listed
    assert json.loads(cli("versions", "--json").stdout)["serving"] == "base"


def test_installed_command_exit_codes(server):
    """The real ``perennial`` process: output and exit status as a shell sees them."""
    base = [sys.executable, "-m", "perennial.cli"]
    ok = subprocess.run(
        [*base, "versions", "--url", server.url, "--admin-key", ADMIN_KEY, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["serving"] == "base"
    wrong = subprocess.run(
        [*base, "rounds", "list", "--url", server.url, "--admin-key", "nope"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert wrong.returncode == 1 and wrong.stderr == "error 401 invalid_api_key: invalid admin key\n"
    down = subprocess.run(
        [*base, "versions", "--url", "http://127.0.0.1:9", "--admin-key", "x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert down.returncode == 3 and down.stderr.startswith("error: cannot connect to http://127.0.0.1:9")
