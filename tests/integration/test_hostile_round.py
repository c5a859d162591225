"""A round scores hostile-but-accepted feedback while chats are answered, and the next round
succeeds (issue 28), on the shared gateway (SQLite, real engines, the embedded learner).

The feedback the gateway accepts but a round must survive: a catastrophic-backtracking regex
(RE2: linear), the same inside a JSON schema, a schema nested 30 deep (within the bound of 32),
cyclic ``$ref`` schemas (a verifier that fails at scoring scores 0, counted in ``verifier_failed``), a reference
longer than ``learner_item_max_chars`` (skipped as ``too_long``), a correction under that bound
yet past the engine's 2048-token context (the engine refuses it where it is scored: 0 and
counted), a NUL in a correction and rewards of 0 (``no_signal``), mixed with ordinary addition
feedback. While the round runs, every chat is answered within ``CHAT_BOUND_S``; the round ends
``succeeded`` (promoted or rejected) with its skip and failure counts in its record; a second
round reads from where the first stopped and succeeds too.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.test_online_loop import MODEL, USER, get, post

pytestmark = pytest.mark.integration

CHAT_BOUND_S = 30.0
TINY = {"iterations": 1, "population": 2, "sigma": 0.02, "alpha": 0.02, "minibatch": 64, "max_tokens": 8}
REGEX = {"type": "regex", "pattern": "(a+)+$"}


def deep(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"items": schema}
    return schema


HOSTILE = [
    ("Say a.", {"reference": "a" * 40 + "b", "verifier": REGEX}),
    (
        "Say aaa in JSON.",
        {"reference": '"aaa"', "verifier": {"type": "json_schema", "schema": {"pattern": "(a+)+$"}}},
    ),
    ("Give a nested list.", {"reference": "[]", "verifier": {"type": "json_schema", "schema": deep(30)}}),
    *[
        (
            f"Give JSON number {i}.",
            {"reference": "{}", "verifier": {"type": "json_schema", "schema": {"$ref": "#"}}},
        )
        for i in range(3)
    ],
    ("Write a long essay.", {"reference": "x" * 20_000, "verifier": "contains"}),
    ("Repeat lorem ipsum.", {"correction": "lorem ipsum dolor " * 640}),  # 11,520 chars: over 2048 tokens
    ("Name a capital.", {"correction": "Paris\u0000 is the capital."}),
    *[(f"Say {w}.", {"reward": 0.0}) for w in ("one", "two", "three")],
]


def chat(server, content: str, bound: float = CHAT_BOUND_S) -> tuple[str, float]:
    """A short chat answered within ``bound``; (completion id, seconds)."""
    body = {
        "model": MODEL,
        "temperature": 0,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": content}],
    }
    started = time.monotonic()
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=USER, timeout=bound)
    assert r.status_code == 200, r.text
    return r.json()["id"], time.monotonic() - started


def give(server, content: str, fields: dict) -> None:
    cid, _ = chat(server, content, bound=120)  # before the round: the machine may be busy elsewhere
    r = post(server, "/v1/feedback", {"completion_id": cid, **fields}, headers=USER)
    assert r.status_code == 200, r.text


def ordinary(server, n: int, offset: int) -> None:
    for i in range(n):
        a, b = 12 + i + offset, 31 + 2 * i
        give(
            server,
            f"What is {a} + {b}? Reply with only the number.",
            {"reference": str(a + b), "verifier": "number", "label": "up" if i % 2 else "down"},
        )


def round_while_chatting(server) -> tuple[dict, list[float]]:
    """Trigger a tiny round, chat until it ends; the round and every chat's seconds."""
    time.sleep(6)  # the learner takes feedback once it has settled (5 s)
    run = post(server, "/admin/learner/rounds", TINY)
    assert run.status_code == 202, run.text
    seconds, deadline = [], time.monotonic() + 900
    while (done := get(server, f"/admin/learner/rounds/{run.json()['id']}"))["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, done
        seconds.append(chat(server, "What is the capital of France?")[1])
        time.sleep(1)
    return done, seconds


def test_a_round_over_hostile_feedback_keeps_chat_answered_and_the_next_round_succeeds(restores_base):
    server = restores_base
    deadline = time.monotonic() + 900  # the learner prepares at boot (its engine, the base's suites)
    while "learner prepared in" not in server.log_file.read_text():
        assert time.monotonic() < deadline, "the learner never reported its preparation"
        time.sleep(2)
    ordinary(server, 6, 0)
    for content, fields in HOSTILE:
        give(server, content, fields)

    first, seconds = round_while_chatting(server)
    assert first["status"] == "succeeded", first
    assert first["decision"] in ("promoted", "rejected"), first
    assert seconds and max(seconds) < CHAT_BOUND_S, seconds
    skipped = first["metrics"]["feedback"]["skipped"]
    assert skipped.get("no_signal", 0) >= 3 and skipped.get("too_long", 0) >= 1, skipped
    (iteration,) = first["iterations"]
    scoring = first["metrics"]["scoring"]
    assert scoring == {
        "failed_items": iteration["failed_items"],
        "verifier_failed": iteration["verifier_failed"],
    }
    # a verifier that fails scores 0 and is counted with the failed items (whether the cyclic
    # schemas fail depends on the reply they meet: tests/unit/test_fitness.py pins the counting)
    target = first["gate"]["checks"]["target"]
    assert {"verifier_failed"} <= target["candidate"].keys(), target
    assert scoring["failed_items"] >= scoring["verifier_failed"]

    ordinary(server, 4, 100)
    second, seconds = round_while_chatting(server)
    assert second["status"] == "succeeded", second
    assert second["feedback"]["from_seq"] == first["feedback"]["to_seq"]  # the hostile items are behind it
    assert not {"too_long", "no_signal"} & set(second["metrics"]["feedback"]["skipped"]), second["metrics"]
    assert not seconds or max(seconds) < CHAT_BOUND_S, seconds
