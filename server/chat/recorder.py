"""The interaction recorder the chat service calls after every completion.

``StoreRecorder.record`` turns an ``Exchange`` into an ``interactions`` row and hands it to
the ingest sink, which only appends to an in-process queue: no I/O on the request path, so
logging adds microseconds to a chat, not a database round trip.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from server.chat.service import Exchange
from store.sink import IngestSink

log = logging.getLogger(__name__)

_MESSAGE_KEYS = ("role", "content", "tool_calls", "reasoning_content")


def _slim_choice(choice: dict[str, Any]) -> dict[str, Any]:
    """Index, message (role, content and tool calls when present) and finish reason only."""
    message = choice.get("message") or {}
    return {
        "index": choice.get("index", 0),
        "message": {k: message[k] for k in _MESSAGE_KEYS if message.get(k) not in (None, [])},
        "finish_reason": choice.get("finish_reason"),
    }


def interaction_row(interaction: Exchange) -> dict[str, Any]:
    """The ``interactions`` row of a finished completion (JSON-ready; times as UNIX seconds)."""
    request = interaction.request
    choices = [_slim_choice(c) for c in interaction.choices]
    first = choices[0] if choices else {"message": {}, "finish_reason": None}
    usage = interaction.usage or {}
    return {
        "id": interaction.completion_id,
        "kind": interaction.kind,
        "created_at": time.time() - interaction.latency_ms / 1000,  # when the request came in
        "model": str(request.get("model", "")),
        "model_version": interaction.model_version,
        "caller": interaction.caller,
        "messages": request.get("messages", []),
        "params": {k: v for k, v in request.items() if k != "messages"},
        "response": first["message"].get("content") or "",
        "choices": choices,
        "finish_reason": first["finish_reason"],
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "latency_ms": interaction.latency_ms,
        "stream": interaction.stream,
    }


class StoreRecorder:
    """Records each interaction through the ingest sink (Redis stream or direct writer)."""

    def __init__(self, sink: IngestSink):
        self.sink = sink

    def record(self, interaction: Exchange) -> None:
        self.sink.record_interaction(interaction_row(interaction))
