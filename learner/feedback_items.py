"""Turn stored feedback into ES items, and split them into train and held-out.

One feedback row can yield several items:

* a reference answer (with its verifier; ``exact`` when none was given), or a verifier alone
  (``regex`` with a pattern, ``json_schema`` with a schema) -> a **verifiable** item: the
  member answers the prompt greedily and the verifier scores it;
* a correction -> a **rated** item with reward +1 on the corrected reply;
* a reward or a label on the served reply -> a **rated** item on that reply (up = +1,
  down = -1, or the scalar reward).

The prompt is the interaction's messages: text turns, and in agent runs the assistant's tool
calls and the tools' results (:mod:`learner.tool_items`); an interaction with images is skipped
and counted. A chat that offered ``tools`` keeps them: its reference item asks the member with
the same tools and scores the member's tool calls (``json`` verifier against a reference call,
given as ``{"name", "arguments"}`` or as an assistant message with ``tool_calls``; the member may
decode as many tokens as the call takes, :func:`learner.tool_items.call_budget`); its rated
items render them into the prompt as served. A rating of a reply that was a tool call, and a
correction that is an assistant message with ``tool_calls``, weigh those calls.
A text completion (a raw prompt, no chat) is skipped
(``raw_prompt``): members are asked through the chat template. The split is by completion id (a stable hash), so items from
one interaction never straddle train and held-out.

Feedback is data from strangers, so nothing in it can stop a round: what cannot be used is
skipped and counted under its reason (:data:`SKIP_REASONS`; a row counts once for each signal
it loses, and once under ``no_signal`` when it yields nothing for no other reason). No caller
owns a round: at most ``max_per_caller`` usable rows per caller are used, the newest (highest
``seq``: feedback on what serves now), and the rest counts as ``over_caller_cap``. An item whose
prompt (its messages and tools as JSON) and reply (reference, correction or rated reply) hold
more than ``max_chars`` characters is skipped as ``too_long``: it cannot fit the learner
engine's context, and a reference that long matches no bounded greedy reply. The bound is in
characters, cheap and before any tokenizing; an item under it that still overflows the context
scores 0 where it is scored and is counted as failed (``learner.fitness``), never failing a round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evals.verifiers import VerifierError, parse_verifier, tool_call_text
from learner.items import ItemSet, RatedItem, VerifiableItem
from learner.tool_items import (
    call_budget,
    call_reference,
    conversation,
    message_calls,
    reference_calls,
    reply_calls,
)

ROLES = ("system", "user", "assistant")
SKIP_REASONS = {
    "unknown_completion": "its interaction never arrived (given up on after orphan_after_s)",
    "raw_prompt": "on a text completion (members are asked through the chat template)",
    "no_text_prompt": "the chat holds images or tool turns, or does not end with the user",
    "bad_verifier": "its reference and verifier cannot be scored",
    "tool_call_reply": "a rating of a reply that was a tool call (no text to score)",
    "no_reply": "a rating of an empty reply",
    "no_signal": "nothing to learn from (a reward of 0, ...)",
    "over_caller_cap": "its caller gave more than learner_max_feedback_per_caller usable items",
    "disabled": "an operator disabled it (counted by the feedback scan)",
    "too_long": "prompt and reply hold more than learner_item_max_chars characters (past the context)",
}


@dataclass
class RoundItems:
    """A round's items and what was skipped (with why)."""

    train: ItemSet = field(default_factory=ItemSet)
    heldout: ItemSet = field(default_factory=ItemSet)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (SKIP_REASONS)
    read: int = 0  # feedback rows given
    used: int = 0  # rows that yielded items within their caller's cap
    callers: int = 0  # distinct callers of the used rows

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def summary(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "used": self.used,
            "callers": self.callers,
            "train": {"verifiable": len(self.train.verifiable), "rated": len(self.train.rated)},
            "heldout": {"verifiable": len(self.heldout.verifiable), "rated": len(self.heldout.rated)},
            "skipped": dict(sorted(self.skipped.items())),
        }


def text_messages(messages: Iterable[Any]) -> tuple[dict[str, str], ...] | None:
    """The chat as plain text turns, or None if it holds anything else."""
    out = []
    for m in messages or ():
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return None
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out) if out and out[-1]["role"] == "user" else None


def heldout_bucket(completion_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(completion_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def items_of(
    fb: Any, interaction: Any, response: str | None, skipped: dict[str, int], max_chars: int | None = None
) -> list:
    """The items one feedback row yields (see the module docstring); those over ``max_chars``
    counted as ``too_long`` instead."""
    if interaction is None:
        skipped["unknown_completion"] = skipped.get("unknown_completion", 0) + 1
        return []
    if getattr(interaction, "kind", "chat") == "completion":
        skipped["raw_prompt"] = skipped.get("raw_prompt", 0) + 1
        return []
    messages = text_messages(interaction.messages) or conversation(interaction.messages)
    if messages is None:
        skipped["no_text_prompt"] = skipped.get("no_text_prompt", 0) + 1
        return []
    params = interaction.params or {}
    tools = tuple(t for t in params.get("tools") or () if isinstance(t, dict))
    out: list[VerifiableItem | RatedItem] = []
    if fb.reference is not None or fb.verifier:
        try:
            reference, spec = call_reference(fb.reference, fb.verifier)  # a reference tool call
            verifier = parse_verifier(spec or "exact", reference)
            is_call = bool(tools) and verifier.type == "json" and reference_calls(reference) is not None
            out.append(
                VerifiableItem(
                    f"{fb.id}:ref",
                    messages,
                    reference or "",
                    verifier,
                    # the whole call must fit: the run's budget (16 tokens) cuts most calls short
                    max_tokens=call_budget(reference) if is_call else None,
                    tools=tools,
                    tool_choice=params.get("tool_choice") if tools else None,
                )
            )
        except VerifierError:
            skipped["bad_verifier"] = skipped.get("bad_verifier", 0) + 1
    if fb.correction:
        out.append(rated(f"{fb.id}:fix", messages, fb.correction, 1.0, tools, message_calls(fb.correction)))
    reward = fb.reward if fb.reward is not None else {"up": 1.0, "down": -1.0}.get(fb.label or "")
    calls = reply_calls(interaction, getattr(fb, "choice_index", 0)) if not response else None
    if reward is not None and reward != 0 and calls:  # a rated tool-call reply: weigh its calls
        out.append(rated(f"{fb.id}:rated", messages, "", float(reward), tools, calls))
    elif reward is not None and reward != 0 and not response and _tool_call_reply(interaction, fb):
        skipped["tool_call_reply"] = skipped.get("tool_call_reply", 0) + 1
    elif reward is not None and reward != 0 and not response:
        skipped["no_reply"] = skipped.get("no_reply", 0) + 1
    elif reward is not None and reward != 0:
        out.append(RatedItem(f"{fb.id}:rated", messages, response, float(reward), tools=tools))
    return within(out, max_chars, skipped)


def item_chars(item: VerifiableItem | RatedItem) -> int:
    """Characters of an item's prompt (messages and tools as JSON) and reply: a cheap bound on its
    tokens (the longest tokens are a few characters), no tokenizer needed.

    >>> item_chars(RatedItem("f:fix", ({"role": "user", "content": "hi"},), "hello", 1.0))
    42
    """
    prompt = json.dumps([list(item.messages), list(item.tools)], ensure_ascii=False, separators=(",", ":"))
    reply = item.completion if isinstance(item, RatedItem) else item.reference
    return len(prompt) + len(reply or "")


def within(items: list, max_chars: int | None, skipped: dict[str, int]) -> list:
    """``items`` of at most ``max_chars`` characters (:func:`item_chars`); the rest counted as ``too_long``."""
    if max_chars is None:
        return items
    kept = [i for i in items if item_chars(i) <= max_chars]
    if len(kept) < len(items):
        skipped["too_long"] = skipped.get("too_long", 0) + len(items) - len(kept)
    return kept


def rated(item_id: str, messages, text: str, reward: float, tools, calls) -> RatedItem:
    """A rated reply in a chat that offered ``tools``: ``calls`` (the reply is those tool calls,
    written as ``tool_call_text`` for reading) or else ``text``."""
    if calls:
        return RatedItem(
            item_id, messages, tool_call_text(calls), reward, tools=tools, tool_calls=tuple(calls)
        )
    return RatedItem(item_id, messages, text, reward, tools=tools)


def _tool_call_reply(interaction: Any, fb: Any) -> bool:
    for choice in interaction.choices or ():
        if isinstance(choice, dict) and choice.get("index", 0) == getattr(fb, "choice_index", 0):
            return bool((choice.get("message") or {}).get("tool_calls"))
    return False


def build_round_items(
    feedback: Iterable[Any],
    heldout_fraction: float,
    max_per_caller: int | None = None,
    max_chars: int | None = None,
) -> RoundItems:
    """Items from ``store.queries.FeedbackItem`` rows, split by completion id.

    Args:
        feedback: the round's rows, in ``seq`` order.
        heldout_fraction: the share of completions held out.
        max_per_caller: most usable rows per caller (the newest); None for no cap.
        max_chars: longest item, prompt and reply (``learner_item_max_chars``); None for no bound.

    Returns:
        The items, and per reason what was skipped (``RoundItems.summary``). The split is
        :func:`heldout_bucket` alone, never rebalanced: an item held out once stays held out in
        every later round's pool (:func:`heldout_pool`), so none is ever trained on.
    """
    result = RoundItems()
    usable: list[tuple[Any, list]] = []
    for row in feedback:
        result.read += 1
        before = sum(result.skipped.values())
        found = items_of(row.feedback, row.interaction, row.response, result.skipped, max_chars)
        if found:
            usable.append((row, found))
        elif sum(result.skipped.values()) == before:
            result.skip("no_signal")
    kept = capped(usable, max_per_caller, result)
    by_completion: dict[str, list] = {}
    for row, found in kept:
        by_completion.setdefault(row.feedback.completion_id, []).extend(found)
    groups = [(cid, items) for cid, items in by_completion.items() if items]
    held = {cid for cid, _ in groups if heldout_bucket(cid, heldout_fraction)}
    for cid, items in groups:
        side = result.heldout if cid in held else result.train
        for item in items:
            (side.verifiable if isinstance(item, VerifiableItem) else side.rated).append(item)
    return result


def capped(usable: list[tuple[Any, list]], cap: int | None, result: RoundItems) -> list[tuple[Any, list]]:
    """The newest ``cap`` usable rows of each caller, in their order; the rest counted.

    >>> from types import SimpleNamespace as NS
    >>> rows = [(NS(seq=s, feedback=NS(caller=c)), ["item"]) for s, c in [(1, "a"), (2, "a"), (3, "b"), (4, "a")]]
    >>> r = RoundItems(); [row.seq for row, _ in capped(rows, 2, r)], r.skipped, r.callers
    ([2, 3, 4], {'over_caller_cap': 1}, 2)
    """
    by_caller: dict[str, list[int]] = {}
    for k, (row, _) in enumerate(usable):
        by_caller.setdefault(row.feedback.caller, []).append(k)
    keep: set[int] = set()
    for positions in by_caller.values():
        drop = max(0, len(positions) - cap) if cap is not None else 0
        newest = sorted(positions, key=lambda k: usable[k][0].seq)[drop:]
        keep.update(newest)
        result.skip("over_caller_cap", len(positions) - len(newest))
    result.used, result.callers = len(keep), len(by_caller)
    return [pair for k, pair in enumerate(usable) if k in keep]


def likelihood_item(item: VerifiableItem | RatedItem) -> VerifiableItem | RatedItem:
    """What the held-out pool scores of an item: a reference tool call becomes its calls as a
    reply (reward 1, the same item id), whose likelihood is scored as the template writes them
    (as a correction of those calls is); anything else as it is."""
    if not isinstance(item, VerifiableItem) or not item.tools or item.verifier.type != "json":
        return item
    calls = reference_calls(item.reference)
    if calls is None:
        return item
    return RatedItem(item.id, item.messages, item.reference, 1.0, item.tags, item.tools, tuple(calls))


def heldout_pool(
    rows: Iterable[Any], *, max_per_task: int, max_per_caller: int | None = None, max_chars: int | None = None
) -> tuple[ItemSet, dict[str, Any]]:
    """The held-out pool that the gate's target check scores, from held-out rows, newest first.

    ``rows``: ``store.queries.FeedbackItem`` rows whose completion :func:`heldout_bucket` holds
    out, newest first (``store.queries.feedback_newest_first``), from every round so far. Only
    items with a reply to score by likelihood are kept (a reference, a correction, a rated reply;
    a reference tool call as its calls, :func:`likelihood_item`); at most ``max_per_task`` per
    task (feedback without a task is one task), the newest, and at most ``max_per_caller`` rows
    per caller.

    Returns:
        The items and a summary: items per task, and what was left out (``unscorable``, ``over_cap``).

    >>> from types import SimpleNamespace as NS
    >>> fb = lambda i, task: NS(id=f"f{i}", seq=10 - i, caller="c", task=task, reward=1.0, label=None,
    ...     correction=None, reference=None, verifier=None, choice_index=0, completion_id=f"c{i}")
    >>> chat = NS(kind="chat", messages=[{"role": "user", "content": "hi"}], params={}, choices=[])
    >>> rows = [NS(seq=10 - i, feedback=fb(i, t), interaction=chat, response="yo") for i, t in enumerate("aab")]
    >>> pool, summary = heldout_pool(rows, max_per_task=1)
    >>> [i.id for i in pool.rated], summary
    (['f0:rated', 'f2:rated'], {'items': 2, 'tasks': {'a': 1, 'b': 1}, 'left_out': {'over_cap': 1}})
    """
    scratch = RoundItems()
    usable = []
    for row in rows:
        found = [
            likelihood_item(i)
            for i in items_of(row.feedback, row.interaction, row.response, scratch.skipped, max_chars)
        ]
        scorable = [i for i in found if isinstance(i, RatedItem) or (i.reference and not i.tools)]
        scratch.skip("unscorable", len(found) - len(scorable))
        if scorable:
            usable.append((row, scorable))
    pool, tasks = ItemSet(), {}
    for row, found in capped(usable, max_per_caller, scratch):
        task = row.feedback.task or ""
        for item in found:
            if tasks.get(task, 0) >= max_per_task:
                scratch.skip("over_cap")
                continue
            tasks[task] = tasks.get(task, 0) + 1
            (pool.verifiable if isinstance(item, VerifiableItem) else pool.rated).append(item)
    left_out = {
        k: v
        for k, v in scratch.skipped.items()
        if k in ("unscorable", "over_cap", "over_caller_cap", "too_long")
    }
    return pool, {"items": len(pool), "tasks": tasks, "left_out": left_out}
