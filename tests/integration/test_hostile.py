"""Hostile requests and feedback, one table, through real gateways (SQLite; Postgres + Redis).

Each row is what a caller we cannot trust sends, with the answer it must get (status and error
``param``); after every row an ordinary chat with ordinary feedback must still be answered and
stored, so no single request stops serving or ingest. What the learner later does with the rows
that are accepted (a regex in linear time, a recursive schema scored 0 and counted, a no-signal
item skipped with its reason) is tested in tests/unit/test_verifiers.py and test_round_items.py;
a key's rate flood in test_quotas.py (it needs small limits of its own).
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_feedback_api import (
    MODEL,
    OTHER_USER,
    USER,
    chat,
    error_of,
    gw,
    post,
    stored_feedback,
)

pytestmark = pytest.mark.integration
__all__ = ["gw"]  # the module's gateways: SQLite, Postgres + Redis

REGEX = {"type": "regex", "pattern": "(a+)+$"}  # catastrophic for a backtracking engine
# (row id, feedback fields on the caller's own completion, expected status, expected error param)
FEEDBACK_ROWS = [
    ("catastrophic regex", {"reference": "a" * 40 + "b", "verifier": REGEX}, 200, None),
    (
        "regex with a backreference",
        {"reference": "aa", "verifier": {"type": "regex", "pattern": r"(a)\1"}},
        400,
        "verifier",
    ),
    (
        "regex inside a schema",
        {
            "reference": '"aaa"',
            "verifier": {"type": "json_schema", "schema": {"type": "string", "pattern": "(a+)+$"}},
        },
        200,
        None,
    ),
    (
        "recursive $ref",
        {"reference": "{}", "verifier": {"type": "json_schema", "schema": {"$ref": "#"}}},
        200,
        None,
    ),
    (
        "remote $ref",
        {
            "reference": "{}",
            "verifier": {"type": "json_schema", "schema": {"$ref": "https://example.com/s.json"}},
        },
        400,
        "verifier",
    ),
    (
        "oversized schema",
        {"reference": "{}", "verifier": {"type": "json_schema", "schema": {"description": "x" * 30_000}}},
        400,
        "verifier",
    ),
    ("NUL in a correction", {"correction": "Paris\u0000 is the capital."}, 200, None),
    ("NUL in metadata", {"label": "up", "metadata": {"k\u0000": "v\u0000"}}, 200, None),
    ("no signal to learn from", {"reward": 0.0, "task": "flood"}, 200, None),
]
CHAT_ROWS = [
    (
        "NUL in chat content",
        {"messages": [{"role": "user", "content": "Hi\u0000there"}], "max_tokens": 2},
        200,
        None,
    ),
    (
        "no max_tokens, ignore_eos, n over the budget",
        {"messages": [{"role": "user", "content": "Count."}], "n": 9, "ignore_eos": True},
        400,
        "n",
    ),
    (
        "oversized schema in response_format",
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"description": "x" * 30_000}},
            },
        },
        400,
        "response_format",
    ),
    (
        "unlisted engine field",
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "guided_grammar": "root ::= 'a'"},
        400,
        "guided_grammar",
    ),
]


def still_serving_and_storing(gw) -> None:
    """An ordinary chat is answered and its ordinary feedback stored, after whatever came before."""
    cid = chat(gw, "What is 2 + 2?", max_tokens=4)["id"]
    accepted = post(
        gw, "/v1/feedback", {"completion_id": cid, "reference": "4", "verifier": {"type": "number"}}
    )
    assert accepted.status_code == 200, accepted.text
    assert [f["id"] for f in stored_feedback(gw, cid, 1)] == [accepted.json()["id"]]


@pytest.mark.parametrize(
    ("row", "fields", "status", "param"), FEEDBACK_ROWS, ids=[r[0] for r in FEEDBACK_ROWS]
)
def test_hostile_feedback(gw, row, fields, status, param):
    cid = chat(gw)["id"]
    answer = post(gw, "/v1/feedback", {"completion_id": cid, **fields})
    assert answer.status_code == status, answer.text
    if status == 200:  # accepted items are stored, NUL and all
        assert [f["id"] for f in stored_feedback(gw, cid, 1)] == [answer.json()["id"]]
    else:
        assert error_of(answer)["param"] == param
    still_serving_and_storing(gw)


def test_feedback_on_another_keys_completion(gw):
    cid = chat(gw)["id"]
    answer = post(gw, "/v1/feedback", {"completion_id": cid, "reward": 1.0}, headers=OTHER_USER)
    assert answer.status_code == 404 and error_of(answer)["code"] == "completion_not_found"
    still_serving_and_storing(gw)


@pytest.mark.parametrize(("row", "body", "status", "param"), CHAT_ROWS, ids=[r[0] for r in CHAT_ROWS])
def test_hostile_chat(gw, row, body, status, param):
    answer = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": MODEL, **body}, headers=USER, timeout=120
    )
    assert answer.status_code == status, answer.text
    if status != 200:
        assert error_of(answer)["param"] == param
    still_serving_and_storing(gw)
