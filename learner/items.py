"""Training items for ES: what a fitness function scores, parsed from JSONL.

One JSON object per line (blank lines and lines starting with ``#`` are ignored):

* **verifiable** — generate greedily, score the reply with a verifier::

    {"messages": [{"role": "user", "content": "What is 12 + 7?"}], "reference": "19",
     "verifier": "number"}

  ``verifier`` is any spec of :mod:`evals.verifiers` (name or object); default ``"exact"``.
  ``max_tokens`` (optional) overrides the run's generation budget for this item. ``tools``
  (and ``tool_choice``, optional) as in a chat request make it a tool-call item: the member's
  tool calls, as ``{"name": ..., "arguments": {...}}``, are what the verifier scores (``json``
  against a reference call)::

    {"prompt": "Weather in Paris?", "tools": [...], "verifier": "json",
     "reference": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"}

* **rated** — a reply with a reward in [-1, 1] (thumbs up = 1, down = -1); the member's
  log-likelihood of the reply, relative to theta0, is pushed up or down by the reward::

    {"messages": [...], "completion": "The capital of France is Paris.", "reward": 1.0}

* **correction** — the reply the user wanted; a rated item with reward 1 by default::

    {"messages": [...], "correction": "19"}

Every item may carry ``"prompt": "..."`` instead of ``messages`` (one user turn), an ``id``
(default: ``line-N``) and ``tags`` (a list of strings). Other keys are errors, so typos do not
pass silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.verifiers import Verifier, VerifierError, parse_verifier

_ROLES = ("system", "user", "assistant")
_COMMON = {"id", "messages", "prompt", "tags"}
_KEYS = {
    "verifiable": _COMMON | {"reference", "verifier", "max_tokens", "tools", "tool_choice"},
    "rated": _COMMON | {"completion", "reward"},
    "correction": _COMMON | {"correction", "reward"},
}


class ItemError(ValueError):
    """An item line is invalid; ``line`` and ``field`` say where."""

    def __init__(self, message: str, *, line: int | None = None, field_name: str | None = None):
        where = f"line {line}: " if line is not None else ""
        super().__init__(where + message)
        self.line = line
        self.field = field_name


@dataclass(frozen=True)
class VerifiableItem:
    id: str
    messages: tuple[dict[str, Any], ...]  # text turns; from agent runs also tool calls and results
    reference: str
    verifier: Verifier
    max_tokens: int | None = None
    tags: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()  # chat tools offered to the member
    tool_choice: Any = None


@dataclass(frozen=True)
class RatedItem:
    id: str
    messages: tuple[dict[str, Any], ...]
    completion: str
    reward: float
    tags: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()  # the chat's tools: rendered into the prompt as served
    tool_calls: tuple[dict[str, Any], ...] = ()  # set: the reply is these calls (learner.tool_items)


Item = VerifiableItem | RatedItem


@dataclass
class ItemSet:
    """Items split by kind, in file order."""

    verifiable: list[VerifiableItem] = field(default_factory=list)
    rated: list[RatedItem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.verifiable) + len(self.rated)


def _kind(obj: dict[str, Any]) -> str:
    if "reference" in obj:
        return "verifiable"
    if "correction" in obj:
        return "correction"
    if "completion" in obj:
        return "rated"
    raise ItemError("an item needs 'reference' (verifiable), 'completion' (rated) or 'correction'")


def _messages(obj: dict[str, Any]) -> tuple[dict[str, str], ...]:
    if "prompt" in obj and "messages" in obj:
        raise ItemError("give 'prompt' or 'messages', not both", field_name="messages")
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"]:
            raise ItemError("'prompt' must be a non-empty string", field_name="prompt")
        return ({"role": "user", "content": obj["prompt"]},)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ItemError("'messages' must be a non-empty list", field_name="messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise ItemError(
                "each message needs a role (system/user/assistant) and string content", field_name="messages"
            )
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user":
        raise ItemError("the last message must be the user's", field_name="messages")
    return tuple(out)


def parse_item(obj: Any, line: int) -> Item:
    """Validate one decoded JSON object; raise ItemError naming the line and field."""
    if not isinstance(obj, dict):
        raise ItemError("an item must be a JSON object", line=line)
    try:
        kind = _kind(obj)
        unknown = sorted(set(obj) - _KEYS[kind])
        if unknown:
            raise ItemError(f"unknown key {unknown[0]!r} for a {kind} item", field_name=unknown[0])
        item_id = str(obj.get("id", f"line-{line}"))
        messages = _messages(obj)
        tags = tuple(str(t) for t in obj.get("tags", ()))
        if kind == "verifiable":
            return _verifiable(obj, item_id, messages, tags)
        text = obj["completion"] if kind == "rated" else obj["correction"]
        if not isinstance(text, str) or not text:
            raise ItemError(
                f"'{'completion' if kind == 'rated' else 'correction'}' must be a non-empty string"
            )
        reward = obj.get("reward", 1.0 if kind == "correction" else None)
        if isinstance(reward, bool) or not isinstance(reward, int | float) or not -1 <= reward <= 1:
            raise ItemError("'reward' must be a number in [-1, 1]", field_name="reward")
        return RatedItem(item_id, messages, text, float(reward), tags)
    except ItemError as exc:
        raise ItemError(str(exc), line=line, field_name=exc.field) from None


def _verifiable(obj: dict[str, Any], item_id: str, messages, tags) -> VerifiableItem:
    reference = obj["reference"]
    if not isinstance(reference, str):
        raise ItemError("'reference' must be a string", field_name="reference")
    try:
        verifier = parse_verifier(obj.get("verifier", "exact"), reference)
    except VerifierError as exc:
        raise ItemError(str(exc), field_name=exc.param) from None
    max_tokens = obj.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096):
        raise ItemError("'max_tokens' must be an integer in 1..4096", field_name="max_tokens")
    tools = obj.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ItemError("'tools' must be a list of tool objects", field_name="tools")
    return VerifiableItem(
        item_id, messages, reference, verifier, max_tokens, tags, tuple(tools), obj.get("tool_choice")
    )


def load_items(path: Path) -> ItemSet:
    """Parse a JSONL item file.

    Args:
        path: the file.

    Returns:
        The items, split by kind. Raises ItemError on the first bad line.
    """
    items = ItemSet()
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ItemError(f"invalid JSON: {exc.msg}", line=lineno) from None
        item = parse_item(obj, lineno)
        (items.verifiable if isinstance(item, VerifiableItem) else items.rated).append(item)
    return items


def rated_weights(items: list[RatedItem]) -> list[float]:
    """The weight of each rated reply's log-likelihood change: its reward, less the set's mean
    reward where that mean is negative.

    Any change of the weights makes a model's own near-mode replies less likely (a sampled
    reply sits near the mode). With raw rewards, a set rated mostly down (users who reject most
    replies) turns that drop into a gain, so drift alone would look like learning, to the fitness
    and to the gate's target check alike (measured: every noise-only candidate passed the target
    check on down-rated replies). Less a negative mean, the weights sum to 0 and a uniform drop
    cancels: only making the up-rated replies likelier *than* the down-rated ones counts (a
    baseline, as in REINFORCE). A mean of 0 or more is kept as it is: a uniform drop then counts
    as a loss or nothing, the conservative side, and all-up feedback still pulls its replies up.

    >>> rated_weights([RatedItem("a", (), "x", -1.0), RatedItem("b", (), "y", -1.0), RatedItem("c", (), "z", 1.0)])
    [-0.6666666666666667, -0.6666666666666667, 1.3333333333333333]
    >>> rated_weights([RatedItem("a", (), "x", 1.0), RatedItem("b", (), "y", -0.5)])
    [1.0, -0.5]
    >>> rated_weights([])
    []
    """
    mean = sum(i.reward for i in items) / len(items) if items else 0.0
    shift = min(mean, 0.0)
    return [i.reward - shift for i in items]
