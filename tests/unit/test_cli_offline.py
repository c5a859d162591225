"""CLI exit codes and messages that need no model: nothing listening (3), too slow (4), usage
(2), an error envelope (1); and round progress lines, read from a FAKE gateway's canned rounds."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner

from perennial.cli import main
from tests.support.fake_gateway import Canned, FakeGateway, envelope

NO_ENV = {"PERENNIAL_URL": None, "PERENNIAL_ADMIN_KEY": None, "PERENNIAL_API_KEY": None}


def run(*args: str, env: dict | None = None):
    return CliRunner(env={**NO_ENV, **(env or {})}).invoke(main, list(args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_exits_3():
    url = f"http://127.0.0.1:{free_port()}"
    result = run("versions", "--url", url, "--admin-key", "pk")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"error: cannot connect to {url}") and result.stdout == ""
    result = run("chat", "hello", env={"PERENNIAL_URL": url})  # the URL from the environment
    assert result.exit_code == 3 and "cannot connect" in result.stderr


def test_slow_server_exits_4():
    with FakeGateway([Canned(200, {"serving": "base", "data": []}, delay_s=1.5)]) as fake:
        result = run("versions", "--url", fake.url, "--admin-key", "pk", "--timeout", "0.2")
    assert result.exit_code == 4 and result.stderr.startswith("error: no answer from")


def test_usage_errors_exit_2():
    assert run("versions").exit_code == 2  # no admin key anywhere
    assert "--admin-key" in run("versions").stderr
    forced = run("promote", "v3", "--force", "--admin-key", "pk")
    assert forced.exit_code == 2 and "--force needs --reason" in forced.stderr
    both = run("feedback", "chatcmpl-x", "--batch", "-", "--up")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_api_error_exits_1_with_the_envelope_on_one_line():
    refusal = envelope(
        409, "v3 is not approved by the gate (suite arithmetic dropped 0.05)", "gate_not_passed"
    )
    with FakeGateway([Canned(409, refusal)]) as fake:
        result = run("promote", "v3", "--url", fake.url, "--admin-key", "pk-1")
    assert result.exit_code == 1
    assert result.stderr == (
        "error 409 gate_not_passed: v3 is not approved by the gate (suite arithmetic dropped 0.05)\n"
    )
    assert fake.received[0].headers["authorization"] == "Bearer pk-1"
    assert json.loads(fake.received[0].body) == {"force": False, "reason": None}


def round_json(status: str, phase: str | None, done: int, **extra) -> dict:
    its = [{"iteration": i, "fitness_mean": 0.1 * i, "drift": 0.5, "wall_s": 3.0} for i in range(done)]
    return {
        "id": 7,
        "status": status,
        "metrics": {"phase": phase, "config": {"iterations": 3}},
        "iterations": its,
        "overrides": {"es": {"iterations": 3}},
        **extra,
    }


def test_rounds_wait_prints_progress_and_the_outcome():
    script = [
        Canned(200, round_json("queued", None, 0)),
        Canned(200, round_json("running", "es", 1)),
        Canned(200, round_json("running", "es", 1)),
        Canned(200, round_json("running", "gate", 3)),
        Canned(200, round_json("succeeded", "reject", 3, decision="rejected")),
    ]
    with FakeGateway(script) as fake:
        result = run("rounds", "wait", "7", "--url", fake.url, "--admin-key", "pk", "--poll", "0.1")
    assert result.exit_code == 0, result.output
    progress = result.stderr.splitlines()
    assert progress == ["round 7: queued", "round 7: es iteration 1/3", "round 7: gate", "round 7: succeeded"]
    assert "decision   rejected" in result.stdout and len(fake.received) == 5


def test_a_failed_round_exits_1_and_a_long_one_exits_4():
    failed = round_json("failed", "es", 1, error="RoundError: no usable feedback")
    with FakeGateway([Canned(200, failed)]) as fake:
        result = run("rounds", "wait", "7", "--url", fake.url, "--admin-key", "pk", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "failed"
    assert result.stderr.splitlines()[-1] == "error: round 7 failed: RoundError: no usable feedback"
    with FakeGateway([Canned(200, round_json("running", "es", 1))]) as fake:
        result = run(
            "rounds",
            "wait",
            "7",
            "--url",
            fake.url,
            "--admin-key",
            "pk",
            "--poll",
            "0.1",
            "--wait-timeout",
            "0.5",
        )
    assert result.exit_code == 4 and "round 7 still es" in result.stderr


def test_invalid_feedback_input_is_a_usage_error_before_any_request():
    with FakeGateway([Canned(500, envelope(500, "must not be called"))]) as fake:
        metadata = run("feedback", "chatcmpl-x", "--up", "--metadata", "[1, 2]", "--url", fake.url)
        batch = CliRunner(env=NO_ENV).invoke(
            main,
            ["feedback", "--batch", "-", "--url", fake.url],
            input='{"completion_id": "chatcmpl-x", "reward": 3}\n',
        )
        not_json = CliRunner(env=NO_ENV).invoke(
            main, ["feedback", "--batch", "-", "--url", fake.url], input="{oops\n"
        )
    assert metadata.exit_code == 2 and "invalid metadata" in metadata.stderr
    assert (
        batch.exit_code == 2
        and "invalid items.0.reward: Input should be less than or equal to 1" in batch.stderr
    )
    assert not_json.exit_code == 2 and "line 1: not JSON" in not_json.stderr
    assert fake.received == []


def test_versions_table_marks_the_serving_version_and_keeps_columns_aligned():
    listing = {
        "serving": "v2",
        "data": [
            {
                "id": "v3",
                "status": "rejected",
                "parent": "v2",
                "created_at": "2026-01-02T03:04:05+00:00",
                "gate": {"promote": False, "reasons": ["suite arithmetic dropped 0.10 > tolerance 0.02"]},
                "disk": {"weights_bytes": 0, "stored": False, "seed_log_bytes": 2345},
            },
            {
                "id": "v2",
                "status": "promoted",
                "serving": True,
                "disk": {"weights_bytes": 538_000_000, "stored": True, "seed_log_bytes": 2100},
                "parent": "base",
                "gate": {"promote": True, "reasons": []},
            },
            {"id": "base", "status": "promoted", "parent": None},
        ],
    }
    with FakeGateway([Canned(200, listing)]) as fake:
        result = run("versions", "--url", fake.url, "--admin-key", "pk")
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and len(lines) == 4
    assert [line.split()[:3] for line in lines] == [
        ["VERSION", "STATUS", "PARENT"],
        ["v3", "rejected", "v2"],
        ["*", "v2", "promoted"],
        ["base", "promoted", "-"],
    ]
    assert (
        len(
            {
                line.index(word)
                for line, word in zip(lines, ["STATUS", "rejected", "promoted", "promoted"], strict=False)
            }
        )
        == 1
    )
    assert "fail: suite arithmetic dropped 0.10 > tolerance 0.02  2026-01-02 03:04:05" in lines[1]
    assert lines[1].endswith("seed log 2.3 kB") and lines[2].endswith("538 MB")  # dropped / stored
    assert lines[2].split()[4] == "pass"


def test_learn_takes_its_engine_dtype_from_the_flag_or_the_environment(tmp_path, monkeypatch):
    """``perennial learn --dtype`` (or PERENNIAL_ENGINE_DTYPE) reaches the learner engine; a FAKE
    ``perennial.offline.learn`` records what it was given instead of starting an engine."""
    import perennial.offline

    seen: list[str] = []

    async def fake_learn(*args, dtype: str = "auto", **kwargs):
        seen.append(dtype)
        raise ValueError("fake: no engine")

    monkeypatch.setattr(perennial.offline, "learn", fake_learn)
    (tmp_path / "items.jsonl").write_text("")
    base = [
        "learn",
        "--model",
        str(tmp_path),
        "--items",
        str(tmp_path / "items.jsonl"),
        "--out",
        str(tmp_path),
    ]
    unset = {"PERENNIAL_ENGINE_DTYPE": None}
    assert run(*base, env=unset).exit_code == 1
    assert run(*base, "--dtype", "float32", env=unset).exit_code == 1
    assert run(*base, env={"PERENNIAL_ENGINE_DTYPE": "bfloat16"}).exit_code == 1
    assert seen == ["auto", "float32", "bfloat16"]
