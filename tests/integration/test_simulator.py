"""The feedback simulator: its plan is reproducible, its local judge agrees with the server's
verifiers, and against the shared gateway its chats and feedback land (counted, paced, stored
with the reference it knew), and errors are counted instead of raised."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from clients.sim_tasks import AdditionTask, builtin_task, load_items, verify
from clients.simulator import SimulationConfig, SimulationError, plan, run_simulation
from evals.verifiers import score
from tests.conftest import API_KEYS

MODEL = "smollm2-135m-instruct"
REPLIES = [
    "42",
    "The answer is 42.",
    "40 + 2 = 42",
    "42 or 41",
    "41",
    "",
    "4,200",
    "-3",
    "Paris!",
    "  paris ",
    "12 + 30 = 41",
    "no numbers here",
]
SPECS = [
    ("42", "number"),
    ("41", "number"),
    ("4200", "number"),
    ("-3", "number"),
    ("paris", "exact"),
    ("Paris", "contains"),
    ("42", {"type": "regex", "pattern": r"^\d+$"}),
]


@pytest.mark.parametrize("reference,spec", SPECS)
def test_local_judge_agrees_with_the_server_verifiers(reference, spec):
    for reply in REPLIES:
        assert verify(reply, reference, spec) == score(reply, reference, spec), reply


def test_plan_is_drawn_from_the_seed():
    config = SimulationConfig("http://x", count=30, rate=5, feedback_fraction=0.5, users=3, seed=7)
    first, again = plan(AdditionTask(), config), plan(AdditionTask(), config)
    assert first == again
    other = plan(AdditionTask(), SimulationConfig("http://x", count=30, seed=8))
    assert [p.ask for p in other] != [p.ask for p in first]
    assert [p.start_s for p in first[:3]] == pytest.approx([0.0, 0.2, 0.4])
    assert {p.user for p in first} == {"sim-7-0", "sim-7-1", "sim-7-2"}
    assert 0 < sum(p.give_feedback for p in first) < 30


def test_items_cycle_before_repeating(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(
        "\n".join(f'{{"prompt": "q{i}", "reference": "{i}", "verifier": "number"}}' for i in range(5))
    )
    asks = load_items(path).asks(random.Random(0), 12)
    first = [a.messages[0]["content"] for a in asks]
    assert sorted(first[:5]) == [f"q{i}" for i in range(5)] and sorted(first[5:10]) == sorted(first[:5])


def test_a_style_task_cannot_send_references():
    with pytest.raises(SimulationError):
        run_simulation(builtin_task("concise"), SimulationConfig("http://127.0.0.1:9", feedback="reference"))


def stored_feedback(server, completion_ids: list[str], key: str = API_KEYS[0]) -> list[dict]:
    headers = {"authorization": f"Bearer {key}"}  # a caller lists only its own completions
    stored = []
    for cid in completion_ids:
        r = httpx.get(server.url + "/v1/feedback", params={"completion_id": cid}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        stored.extend(r.json()["data"])
    return stored


@pytest.mark.integration
def test_addition_users_chat_and_send_their_references(server):
    config = SimulationConfig(server.url, API_KEYS[0], count=8, rate=4, concurrency=4, seed=3, max_tokens=12)
    started = time.perf_counter()
    report = run_simulation(AdditionTask(), config)
    assert time.perf_counter() - started >= 7 / 4  # the 8th chat may not start before 1.75 s
    assert report.errors == [] and report.chats == 8 and report.feedback_sent == 8, report.to_json()
    assert report.model == MODEL and report.versions == {"base": 8}
    assert report.feedback_kinds == {"reference": 8} and len(report.judged) == 8
    asked = {p.ask.reference for p in plan(AdditionTask(), config)}
    stored = stored_feedback(server, report.completion_ids)
    assert len(stored) == 8 and {fb["reference"] for fb in stored} == asked
    assert all(fb["task"] == "addition" and fb["metadata"]["user"].startswith("sim-3-") for fb in stored)


@pytest.mark.integration
def test_style_users_give_thumbs_from_their_hidden_preference(server):
    config = SimulationConfig(server.url, API_KEYS[1], count=4, concurrency=4, seed=1, max_tokens=40)
    report = run_simulation(builtin_task("concise"), config)
    assert report.chats == 4 and report.feedback_sent == 4, report.to_json()
    assert report.feedback_kinds == {"label": 4}
    labels = [fb["label"] for fb in stored_feedback(server, report.completion_ids, API_KEYS[1])]
    assert len(labels) == 4 and labels.count("up") == sum(report.judged)  # up iff judged 1.0


@pytest.mark.integration
def test_errors_are_counted_not_raised(server):
    bad = SimulationConfig(server.url, "sk-wrong", count=3, model=MODEL)
    report = run_simulation(AdditionTask(), bad)
    assert report.chats == 0 and report.chat_errors == 3 and report.feedback_sent == 0
    assert "401" in report.errors[0] or "Authentication" in report.errors[0]
    with pytest.raises(SimulationError):
        run_simulation(AdditionTask(), SimulationConfig(server.url, "sk-wrong", count=1))
