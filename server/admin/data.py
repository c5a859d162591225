"""Admin data routes (admin key): browse and export stored interactions with their feedback.

    GET /admin/interactions?limit=&after=&order=&since=&until=&version=&has_feedback=&caller=
        one page, newest first by default: {"object": "list", "data": [...], "first_id",
        "last_id", "has_more"}; pass ``after=<last_id>`` for the next page
    GET /admin/interactions/export?since=&until=&version=&has_feedback=&caller=
        every match in stored order (oldest first, give or take concurrent writes), as JSONL:
        one interaction per line, its feedback nested
    GET /admin/store    ingest state (mode, Redis up, queue depths, consumer counters) and
        disk: free space in the data directory, bytes per version, what the retention policy
        keeps (and why) and would drop now

``since``/``until``: ISO 8601 (UTC unless an offset is given) or UNIX seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import WithJsonSchema
from sqlalchemy.exc import SQLAlchemyError

from server.auth import admin_caller
from server.deps import DB, AppSettings, Ingest
from server.errors import APIError
from server.feedback.service import stored_object, unavailable
from server.openapi import JSONL, doc
from server.versions.service import Versions
from store.models import Interaction, utcnow
from store.queries import InteractionFilter, UnknownCursor, iter_interactions, list_interactions
from store.retention import disk_free, disk_rows, plan
from weights.lineage import can_replay

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_caller)])


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ``since``/``until``: parsed here, not by pydantic's datetime, so the document can say what
# is accepted (pydantic takes some number spellings and refuses others: "-6.2e10", not "-1e10").
MAX_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59Z
Instant = Annotated[
    str | None,
    Query(description="ISO 8601 (UTC unless an offset is given) or UNIX seconds."),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": 0, "maximum": MAX_UNIX_S},
            ]
        }
    ),
]


def parse_instant(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 instant or UNIX seconds as an aware UTC datetime; 400 naming ``name`` otherwise."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    try:
        if seconds is None:
            return _utc(datetime.fromisoformat(value))
        if math.isfinite(seconds) and 0 <= seconds <= MAX_UNIX_S:
            return datetime.fromtimestamp(seconds, UTC)
    except ValueError:
        pass
    raise APIError(
        400,
        f"{name}: expected an ISO 8601 date-time or UNIX seconds, got {value[:64]!r}",
        param=name,
        code="invalid_value",
    )


def interaction_filter(
    since: Instant = None,
    until: Instant = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    has_feedback: bool | None = None,
    caller: Annotated[str | None, Query(max_length=64)] = None,
) -> InteractionFilter:
    return InteractionFilter(
        parse_instant(since, "since"), parse_instant(until, "until"), version, has_feedback, caller
    )


Filters = Annotated[InteractionFilter, Depends(interaction_filter)]


def interaction_object(i: Interaction, **extra: Any) -> dict[str, Any]:
    """The API shape of a stored interaction."""
    usage = None
    if i.prompt_tokens is not None or i.completion_tokens is not None:
        total = (i.prompt_tokens or 0) + (i.completion_tokens or 0)
        usage = {
            "prompt_tokens": i.prompt_tokens,
            "completion_tokens": i.completion_tokens,
            "total_tokens": total,
        }
    return {
        "id": i.id,
        "object": "interaction",
        "kind": i.kind,
        "created": i.created_at.timestamp(),
        "model": i.model,
        "model_version": i.model_version,
        "caller": i.caller,
        "messages": i.messages,
        "params": i.params,
        "response": i.response,
        "choices": i.choices,
        "finish_reason": i.finish_reason,
        "usage": usage,
        "latency_ms": i.latency_ms,
        "stream": i.stream,
        **extra,
    }


@router.get("/interactions", **doc(errors=(404, 503)))
async def list_stored_interactions(
    db: DB,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(max_length=64)] = None,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    try:
        async with db.sessions() as session:
            page = await list_interactions(
                session, filters=filters, limit=limit, after=after, descending=order == "desc"
            )
    except UnknownCursor as exc:
        # 404, not 400: the cursor is well-formed, it names no stored interaction
        raise APIError(
            404, f"after: no interaction {after!r}", param="after", code="interaction_not_found"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(exc) from exc
    data = [interaction_object(i, feedback_count=n) for i, n in page.rows]
    return {
        "object": "list",
        "data": data,
        "has_more": page.has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/interactions/export", response_class=Response, **doc(responses=JSONL))
async def export_interactions(db: DB, filters: Filters) -> StreamingResponse:
    sessions = db.sessions

    async def lines() -> AsyncIterator[bytes]:
        async for interaction, feedback in iter_interactions(sessions, filters=filters):
            obj = interaction_object(interaction, feedback=[stored_object(f) for f in feedback])
            yield json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="interactions-{stamp}.jsonl"'},
    )


@router.get("/store")
async def store_status(ingest: Ingest, db: DB, versions: Versions, settings: AppSettings) -> dict[str, Any]:
    return {**ingest.stats(), "disk": await disk_report(db, settings, versions.retention)}


async def disk_report(db, settings, policy) -> dict[str, Any]:
    """Free space where the data lives and what each version's snapshot holds."""
    async with db.sessions() as session:
        rows = await disk_rows(session, can_replay)
    per_version = {
        d.id: {"weights_bytes": d.bytes, "status": d.status, "serving": d.serving} for _, d in rows
    }
    out: dict[str, Any] = {
        "data_dir": str(settings.data_dir),
        **disk_free(settings.data_dir),
        "min_free_bytes": int(settings.min_free_disk_gb * 1e9),
        "budget_bytes": policy.budget_bytes if policy else None,
        "snapshots_bytes": sum(v["weights_bytes"] for v in per_version.values()),
        "versions": per_version,
    }
    if policy is not None:
        out["retention"] = plan([d for _, d in rows], policy, utcnow()).to_json()
    return out
