"""Every non-chat request of the SDK, as a :class:`~clients.transport.Call`.

The sync (``clients/sdk.py``) and async (``clients/aio.py``) clients run these same calls, so
the two surfaces cannot drift apart: paths, bodies, idempotency and parsing live here once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from clients.models import (
    AuditEntry,
    Feedback,
    FeedbackAction,
    FeedbackBatch,
    FeedbackItem,
    FeedbackPage,
    InteractionPage,
    Rebuild,
    Round,
    Suite,
    SwapResult,
    Version,
    VersionList,
)
from clients.transport import Call


def _json(response: httpx.Response) -> Any:
    return response.json()


def _replayed(response: httpx.Response) -> bool:
    return response.headers.get("idempotent-replayed", "").lower() == "true"


def _idempotency(key: str | None) -> dict[str, str]:
    # One key per logical call, made before the first attempt: every retry sends the same one,
    # so the server stores the feedback once however many attempts reach it.
    return {"Idempotency-Key": key or f"perennial-sdk-{uuid.uuid4().hex}"}


class _Batch(BaseModel):
    items: list[FeedbackItem]


def feedback(item: FeedbackItem, key: str | None) -> Call[Feedback]:
    def parse(r: httpx.Response) -> Feedback:
        return Feedback.model_validate({**r.json(), "replayed": _replayed(r)})

    return Call("POST", "/v1/feedback", parse, json=item.to_json(), headers=_idempotency(key))


def feedback_batch(items: Iterable[FeedbackItem | Mapping[str, Any]], key: str | None) -> Call[FeedbackBatch]:
    # Checked as one model so an invalid item is named by its position (items.3.reward).
    body = _Batch.model_validate({"items": list(items)}).model_dump(exclude_none=True)

    def parse(r: httpx.Response) -> FeedbackBatch:
        return FeedbackBatch.model_validate({**r.json(), "replayed": _replayed(r)})

    return Call("POST", "/v1/feedback/batch", parse, json=body, headers=_idempotency(key))


def feedback_list(completion_id: str) -> Call[list[Feedback]]:
    def parse(r: httpx.Response) -> list[Feedback]:
        return [Feedback.model_validate(f) for f in r.json()["data"]]

    return Call("GET", "/v1/feedback", parse, params={"completion_id": completion_id})


def health() -> Call[dict[str, Any]]:
    # /health answers 503 with a body while the engine is down; that is an error here.
    return Call("GET", "/health", _json)


def model_name() -> Call[str]:
    return Call("GET", "/v1/models", lambda r: r.json()["data"][0]["id"])


def versions(limit: int) -> Call[VersionList]:
    return Call(
        "GET",
        "/admin/versions",
        lambda r: VersionList.model_validate(r.json()),
        params={"limit": limit},
        admin=True,
    )


def version(version_id: str) -> Call[Version]:
    return Call(
        "GET",
        f"/admin/versions/{_segment(version_id)}",
        lambda r: Version.model_validate(r.json()),
        admin=True,
    )


def promote(version_id: str, force: bool, reason: str | None) -> Call[SwapResult]:
    body = {"force": force, "reason": reason}
    return Call(
        "POST",
        f"/admin/versions/{_segment(version_id)}/promote",
        lambda r: SwapResult.model_validate(r.json()),
        json=body,
        admin=True,
        idempotent=False,
    )


def rebuild(version_id: str) -> Call[Rebuild]:
    return Call(
        "POST",
        f"/admin/versions/{_segment(version_id)}/rebuild",
        lambda r: Rebuild.model_validate(r.json()),
        admin=True,
        idempotent=True,  # starting a rebuild that runs already is a no-op
    )


def rebuild_status(version_id: str) -> Call[Rebuild]:
    return Call(
        "GET",
        f"/admin/versions/{_segment(version_id)}/rebuild",
        lambda r: Rebuild.model_validate(r.json()),
        admin=True,
    )


def rollback(to: str | None, reason: str | None) -> Call[SwapResult]:
    return Call(
        "POST",
        "/admin/rollback",
        lambda r: SwapResult.model_validate(r.json()),
        json={"to": to, "reason": reason},
        admin=True,
        idempotent=False,
    )


def audit(limit: int) -> Call[list[AuditEntry]]:
    return Call(
        "GET",
        "/admin/audit",
        lambda r: [AuditEntry.model_validate(e) for e in r.json()["data"]],
        params={"limit": limit},
        admin=True,
    )


def rounds(limit: int) -> Call[list[Round]]:
    return Call(
        "GET",
        "/admin/learner/rounds",
        lambda r: [Round.model_validate(x) for x in r.json()["data"]],
        params={"limit": limit},
        admin=True,
    )


def round_by_id(round_id: int) -> Call[Round]:
    return Call(
        "GET", f"/admin/learner/rounds/{int(round_id)}", lambda r: Round.model_validate(r.json()), admin=True
    )


def round_overrides(*, gate: Mapping[str, Any] | None = None, **knobs: Any) -> dict[str, Any]:
    """The JSON body of ``POST /admin/learner/rounds``: ES knobs by name, and ``gate`` thresholds.

    Unset (None) values are left to the server, which knows the knobs, their ranges and
    defaults; an unknown or invalid one comes back as its 400 (``InvalidRequestError``).
    """
    body = {k: v for k, v in knobs.items() if v is not None}
    gate = {k: v for k, v in (gate or {}).items() if v is not None}
    return {**body, "gate": gate} if gate else body


def trigger(body: Mapping[str, Any]) -> Call[Round]:
    # Not idempotent: a lost answer must not queue a second round (a retry would get a 409).
    return Call(
        "POST",
        "/admin/learner/rounds",
        lambda r: Round.model_validate(r.json()),
        json=dict(body),
        admin=True,
        idempotent=False,
    )


def learner() -> Call[dict[str, Any]]:
    return Call("GET", "/admin/learner", _json, admin=True)


def engine() -> Call[dict[str, Any]]:
    return Call("GET", "/admin/engine", _json, admin=True)


def suites(model_version: str | None) -> Call[list[Suite]]:
    params = {"model_version": model_version} if model_version else None
    return Call(
        "GET",
        "/admin/suites",
        lambda r: [Suite.model_validate(s) for s in r.json()["data"]],
        params=params,
        admin=True,
    )


def suite_content(path: str | Path | None, content: str | None) -> str:
    """The JSONL to upload: read from ``path``, or ``content`` as given (exactly one of them)."""
    if (path is None) == (content is None):
        raise ValueError("give exactly one of path or content")
    return Path(path).read_text(encoding="utf-8") if path is not None else str(content)


def add_suite(content: str, name: str | None, version: int | None) -> Call[Suite]:
    # Idempotent: the same name + version + content is an upsert, other content a 409.
    body = {k: v for k, v in {"content": content, "name": name, "version": version}.items() if v is not None}
    return Call("POST", "/admin/suites", lambda r: Suite.model_validate(r.json()), json=body, admin=True)


def remove_suite(name: str, version: str | None) -> Call[list[Suite]]:
    return Call(
        "DELETE",
        f"/admin/suites/{_segment(name)}",
        lambda r: [Suite.model_validate(s) for s in r.json()["data"]],
        params={"version": version} if version else None,
        admin=True,
    )


def interactions(*, limit: int, after: str | None, order: str, **filters: Any) -> Call[InteractionPage]:
    params = {"limit": limit, "after": after, "order": order, **filters}
    return Call(
        "GET",
        "/admin/interactions",
        lambda r: InteractionPage.model_validate(r.json()),
        params=query(params),
        admin=True,
    )


def stored_feedback(*, limit: int, after: str | None, **filters: Any) -> Call[FeedbackPage]:
    return Call(
        "GET",
        "/admin/feedback",
        lambda r: FeedbackPage.model_validate(r.json()),
        params=query({"limit": limit, "after": after, **filters}),
        admin=True,
    )


def feedback_action(action: str, *, reason: str | None = None, **selection: Any) -> Call[FeedbackAction]:
    """``POST /admin/feedback/{action}`` on a selection: ids, caller, since, until (AND)."""
    body = query({**selection, "reason": reason})
    if "ids" in body:
        body["ids"] = list(body["ids"])
    # Idempotent: disabling, enabling or deleting the same selection twice changes nothing more.
    return Call(
        "POST",
        f"/admin/feedback/{_segment(action)}",
        lambda r: FeedbackAction.model_validate(r.json()),
        json=body,
        admin=True,
    )


def query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as the server parses them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return out


def _segment(value: str) -> str:
    """A path segment, percent-encoded (a version id with '/' must not change the route)."""
    return quote(str(value), safe="")
