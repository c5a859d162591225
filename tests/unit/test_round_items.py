"""A round's items from feedback rows: what cannot be used is skipped and counted by reason, and
no caller gives a round more than its cap (its newest usable rows)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from learner.feedback_items import SKIP_REASONS, build_round_items

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


def chat(kind: str = "chat", messages=PROMPT, reply: str = "4", tool_calls=None) -> NS:
    message = {"role": "assistant", "content": reply, **({"tool_calls": tool_calls} if tool_calls else {})}
    return NS(kind=kind, messages=messages, params={}, choices=[{"index": 0, "message": message}])


def row(seq: int, caller: str = "key_a", interaction=None, reply: str | None = "4", **signals) -> NS:
    fields = {"reward": None, "label": None, "correction": None, "reference": None, "verifier": None}
    fb = NS(id=f"fb-{seq}", completion_id=f"c{seq}", choice_index=0, caller=caller, **{**fields, **signals})
    return NS(seq=seq, feedback=fb, interaction=interaction, response=reply)


def test_every_unusable_row_is_counted_under_its_reason_and_nothing_raises():
    rows = [
        row(1, interaction=None, label="up"),  # its interaction never arrived
        row(2, interaction=chat(kind="completion"), label="up"),
        row(3, interaction=chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), label="up"),
        row(4, interaction=chat(), reference="4", verifier={"type": "regex", "pattern": "("}),
        row(5, interaction=chat(reply="", tool_calls=[{"id": "t"}]), reply="", label="up"),
        row(6, interaction=chat(reply=""), reply="", reward=0.5),
        row(7, interaction=chat(), reward=0.0),
    ]
    items = build_round_items(rows, 0.25, max_per_caller=10)
    assert len(items.train) == 0 and len(items.heldout) == 0
    summary = items.summary()
    assert summary["skipped"] == {
        "bad_verifier": 1,
        "no_reply": 1,
        "no_signal": 1,
        "no_text_prompt": 1,
        "raw_prompt": 1,
        "tool_call_reply": 1,
        "unknown_completion": 1,
    }
    assert set(summary["skipped"]) <= set(SKIP_REASONS)
    assert (summary["read"], summary["used"], summary["callers"]) == (7, 0, 0)


def test_a_row_that_loses_one_signal_still_gives_the_others():
    both = row(
        1, interaction=chat(), reference="4", verifier={"type": "regex", "pattern": "("}, correction="4"
    )
    items = build_round_items([both], 0.25)
    assert [i.id for i in items.train.rated] == ["fb-1:fix"]
    assert items.skipped == {"bad_verifier": 1} and items.used == 1


def test_one_caller_gives_at_most_its_cap_the_newest():
    flood = [row(s, caller="key_flood", interaction=chat(), label="up") for s in range(1, 41)]
    others = [row(s, caller=f"key_{s}", interaction=chat(), label="down") for s in (41, 42, 43)]
    items = build_round_items(flood + others, 0.25, max_per_caller=5)
    ids = {i.id.split(":")[0] for side in (items.train, items.heldout) for i in side.rated}
    assert ids == {f"fb-{s}" for s in (36, 37, 38, 39, 40, 41, 42, 43)}
    summary = items.summary()
    assert summary["skipped"] == {"over_caller_cap": 35}
    assert (summary["read"], summary["used"], summary["callers"]) == (43, 8, 4)


def test_unusable_rows_do_not_use_up_a_callers_cap():
    rows = [row(1, interaction=chat(), reward=0.0), row(2, interaction=chat(), label="up")]
    items = build_round_items(rows, 0.25, max_per_caller=1)
    assert items.used == 1 and items.skipped == {"no_signal": 1}


@pytest.mark.parametrize("cap", [None, 100])
def test_no_cap_or_a_high_one_keeps_every_usable_row(cap):
    rows = [row(s, interaction=chat(), label="up") for s in range(1, 9)]
    items = build_round_items(rows, 0.25, max_per_caller=cap)
    assert items.used == 8 and "over_caller_cap" not in items.skipped
    assert len(items.train) + len(items.heldout) == 8 and len(items.heldout) >= 1


def test_items_longer_than_the_bound_are_skipped_as_too_long_and_the_rest_of_their_row_kept():
    """A correction, a reference or a prompt past the learner engine's context (2048 tokens; the
    gateway takes corrections and references up to 32,768 characters) never reaches a member."""
    long = "x" * 20_000
    rows = [
        row(1, interaction=chat(), correction=long),
        row(2, interaction=chat(), reference=long, verifier="contains", label="up"),
        row(3, interaction=chat(messages=[{"role": "user", "content": long}]), label="up"),
        row(4, interaction=chat(), correction="4"),
    ]
    items = build_round_items(rows, 0.25, max_chars=12_288)
    ids = {i.id for side in (items.train, items.heldout) for i in [*side.rated, *side.verifiable]}
    assert ids == {"fb-2:rated", "fb-4:fix"}
    assert items.skipped == {"too_long": 3} and items.used == 2  # no no_signal on top
    assert set(items.skipped) <= set(SKIP_REASONS)
    unbounded = build_round_items(rows, 0.25)
    assert len(unbounded.train) + len(unbounded.heldout) == 5 and not unbounded.skipped


def test_the_heldout_pool_leaves_out_items_past_the_bound():
    from learner.feedback_items import heldout_pool

    rows = [
        row(1, interaction=chat(), correction="x" * 20_000, task=None),
        row(2, interaction=chat(), correction="4", task=None),
    ]
    pool, summary = heldout_pool(rows, max_per_task=10, max_chars=12_288)
    assert [i.id for i in pool.rated] == ["fb-2:fix"] and summary["left_out"] == {"too_long": 1}


def test_docstring_examples():
    import doctest

    from learner import feedback_items

    result = doctest.testmod(feedback_items)
    assert result.attempted > 0 and result.failed == 0
