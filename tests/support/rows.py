"""Rows as the gateway builds them (JSON-ready, times as UNIX seconds), for store tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from store.ingest import FEEDBACK, INTERACTION, Entry


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def interaction_row(cid: str | None = None, **overrides: Any) -> dict[str, Any]:
    cid = cid or completion_id()
    row = {
        "id": cid,
        "created_at": time.time(),
        "model": "m",
        "model_version": "base",
        "caller": "key_test",
        "messages": [{"role": "user", "content": f"question {cid[-6:]}"}],
        "params": {"max_tokens": 8, "temperature": 0},
        "response": f"answer {cid[-6:]}",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer {cid[-6:]}"},
                "finish_reason": "stop",
            }
        ],
        "finish_reason": "stop",
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "latency_ms": 10.0,
        "stream": False,
    }
    return {**row, **overrides}


def feedback_row(cid: str, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": f"fb-{uuid.uuid4().hex}",
        "completion_id": cid,
        "choice_index": 0,
        "caller": "key_test",
        "reward": 1.0,
        "label": "up",
        "correction": None,
        "reference": None,
        "verifier": None,
        "task": "test",
        "metadata": {"k": 1},
        "idempotency_key": None,
        "created_at": time.time(),
    }
    return {**row, **overrides}


def interaction(cid: str | None = None, **overrides: Any) -> Entry:
    return Entry(INTERACTION, interaction_row(cid, **overrides))


def feedback(*rows: dict[str, Any], idempotency: dict | None = None) -> Entry:
    return Entry(FEEDBACK, {"items": list(rows), "idempotency": idempotency})
