"""Learner items from agent runs: conversations with tool calls and tool results, and tool-call replies.

An agent's turn is a chat whose earlier turns hold the assistant's tool calls and the tools'
results, and whose reply may itself be tool calls. :mod:`learner.feedback_items` uses these to
learn from feedback on such turns (the items replay the conversation up to the rated turn, with
the tools it offered):

* :func:`conversation`: the interaction's messages, tool turns included, as item messages;
* :func:`message_calls`: a ``reference`` or ``correction`` that holds an assistant message with
  ``tool_calls`` (as JSON), e.g. ``{"role": "assistant", "tool_calls": [{"type": "function",
  "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]}``; a reference
  becomes a ``json``-verified reference call (:func:`call_reference`), a correction a rated reply
  made of those calls;
* :func:`reply_calls`: the tool calls of the served reply, so a rating of a tool-call reply
  weighs those calls;
* :func:`reference_calls`: a reference call (``{"name", "arguments"}``, or a list of those) back
  in the chat shape, so the held-out pool can score its likelihood as the template writes it,
  and :func:`call_budget`, the tokens a member needs to write it.

A rated item's calls are scored as the model would write them: the chat template renders the
assistant message with its ``tool_calls`` (``learner.fitness``), so the likelihood is of the
served tokens, whatever the template's call syntax.
"""

from __future__ import annotations

import json
from typing import Any

from evals.verifiers import tool_call_text

ROLES = ("system", "user", "assistant", "tool")


def conversation(messages: Any) -> tuple[dict[str, Any], ...] | None:
    """The chat as item messages, tool calls and tool results included; None if it holds
    anything else (images, ...) or does not end with a user or tool turn."""
    out = []
    for m in messages or ():
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return None
        content, calls = m.get("content"), m.get("tool_calls")
        if m["role"] == "assistant" and calls:
            norm = _calls(calls)
            if norm is None or not (content is None or isinstance(content, str)):
                return None
            out.append({"role": "assistant", "content": content or None, "tool_calls": norm})
        elif not isinstance(content, str):
            return None
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": content, "tool_call_id": str(m.get("tool_call_id") or "")})
        else:
            out.append({"role": m["role"], "content": content})
    return tuple(out) if out and out[-1]["role"] in ("user", "tool") else None


def _calls(calls: Any) -> list[dict[str, Any]] | None:
    """Tool calls in the chat shape (arguments as a JSON string), or None if malformed."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for n, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = call.get("id") or f"call_{n}"
        out.append(
            {
                "id": str(call_id),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return out


def message_calls(text: str | None) -> list[dict[str, Any]] | None:
    """The tool calls of an assistant message given as JSON text, or None if it is not one."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        return None
    return _calls(message.get("tool_calls"))


def call_reference(reference: str | None, verifier: Any) -> tuple[str | None, Any]:
    """(reference, verifier) of a reference item: an assistant message with tool calls is
    scored as a reference call (``json`` against the calls as :func:`evals.verifiers.tool_call_text`
    writes them); anything else is returned as given."""
    calls = message_calls(reference)
    if calls is None or verifier not in (None, "exact", "json"):
        return reference, verifier
    return tool_call_text(calls), "json"


def reply_calls(interaction: Any, choice_index: int = 0) -> list[dict[str, Any]] | None:
    """The tool calls of the interaction's reply ``choice_index``, or None if it made none."""
    for choice in getattr(interaction, "choices", None) or ():
        if isinstance(choice, dict) and choice.get("index", 0) == choice_index:
            return _calls((choice.get("message") or {}).get("tool_calls"))
    return None


def reference_calls(reference: str | None) -> list[dict[str, Any]] | None:
    """A ``json`` reference call as :func:`evals.verifiers.tool_call_text` writes it
    (``{"name": ..., "arguments": {...}}``, or a list of those) as chat tool calls; None if it
    is not one."""
    try:
        value = json.loads(reference or "")
    except ValueError:
        return None
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(
        isinstance(c, dict) and set(c) == {"name", "arguments"} and isinstance(c["name"], str) for c in calls
    ):
        return None
    return _calls([{"function": c} for c in calls])


def call_budget(reference: str) -> int:
    """Greedy tokens for a member to write a reference call, end of turn included: the template
    writes it shorter than its JSON (``[get_weather(city="Paris")]``, 9 tokens of SmolLM2 for 55
    characters of JSON), so one token per two bytes of the JSON, plus slack, always fits it."""
    return min(1024, 16 + len(reference.encode()) // 2)
