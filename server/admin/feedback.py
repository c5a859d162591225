"""Admin feedback routes (admin key): see stored feedback, quarantine it, delete it.

    GET  /admin/feedback?caller=&since=&until=&disabled=&completion_id=&limit=&after=
        one page, newest first: {"object": "list", "data": [...], "first_id", "last_id",
        "has_more"}; each item is the feedback object plus ``caller``, ``disabled``,
        ``disabled_at`` and ``disabled_reason``; pass ``after=<last_id>`` for the next page
    POST /admin/feedback/disable   {"ids": [...], "caller", "since", "until", "reason"}
    POST /admin/feedback/enable    the same selection
    POST /admin/feedback/delete    the same selection (for good)
        -> {"object": "feedback.action", "action", "count", "ids", "selection"}

A selection names feedback ids, a caller (a key id, ``key_<12 hex>``), a time range on when the
feedback was given, or several of these (combined with AND); one that names nothing is refused
(400), so no action touches every item by accident. Disabled feedback never trains or measures:
the learner passes over it and counts it (``disabled`` in a round's ``metrics.feedback``). Each
action is written to the audit log (``GET /admin/audit``) with its selection, reason and ids.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, WithJsonSchema
from sqlalchemy.exc import SQLAlchemyError

from server.admin.data import MAX_UNIX_S, Instant, parse_instant
from server.auth import Admin, admin_caller
from server.deps import DB
from server.errors import APIError
from server.feedback.service import stored_object, unavailable
from server.openapi import doc
from store.models import Feedback
from store.quarantine import Selection, delete_feedback, disable, enable, list_feedback, seq_of
from store.versions import audit

router = APIRouter(prefix="/admin/feedback", dependencies=[Depends(admin_caller)])
MAX_IDS = 1000  # per request, and in an answer or audit row

BodyInstant = Annotated[
    StrictStr | StrictInt | StrictFloat | None,  # strict: JSON true/false is no instant
    Field(None, description="ISO 8601 (UTC unless an offset is given) or UNIX seconds."),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": 0, "maximum": MAX_UNIX_S},
                {"type": "null"},
            ]
        }
    ),
]
CRITERIA = ("ids", "caller", "since", "until")


class FeedbackSelection(BaseModel):
    """Which feedback to act on: the criteria given are combined with AND; at least one."""

    model_config = ConfigDict(
        extra="forbid",
        # the one rule a validator cannot show: some criterion must be given (and not null)
        json_schema_extra={
            "anyOf": [{"required": [c], "properties": {c: {"not": {"type": "null"}}}} for c in CRITERIA]
        },
    )

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=MAX_IDS, description="Feedback ids (fb-...)."
    )
    caller: str | None = Field(None, min_length=1, max_length=64, description="A key id (key_...).")
    since: BodyInstant = None
    until: BodyInstant = None
    reason: str | None = Field(
        None, max_length=500, description="Why (in the audit log; kept on disabled items)."
    )

    def selection(self) -> Selection:
        if all(getattr(self, c) is None for c in CRITERIA):
            raise APIError(400, f"name some feedback: one of {', '.join(CRITERIA)}", code="invalid_value")
        return Selection(
            ids=tuple(self.ids) if self.ids is not None else None,
            caller=self.caller,
            since=parse_instant(_text(self.since), "since"),
            until=parse_instant(_text(self.until), "until"),
        )


def _text(value: str | float | None) -> str | None:
    return None if value is None else str(value)


def feedback_json(row: Feedback) -> dict[str, Any]:
    """The admin shape of a stored feedback row: the API object plus who sent it and its state."""
    return {
        **stored_object(row),
        "caller": row.caller,
        "disabled": row.disabled_at is not None,
        "disabled_at": int(row.disabled_at.timestamp()) if row.disabled_at else None,
        "disabled_reason": row.disabled_reason,
    }


@router.get("", **doc(errors=(404, 503)))
async def feedback_list(
    db: DB,
    caller: Annotated[str | None, Query(max_length=64)] = None,
    since: Instant = None,
    until: Instant = None,
    disabled: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(max_length=64, description="The last id of the page before.")] = None,
) -> dict[str, Any]:
    """Stored feedback, newest first, with who sent it and whether it is disabled."""
    chosen = Selection(
        caller=caller,
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
        disabled=disabled,
    )
    try:
        async with db.sessions() as session:
            after_seq = await seq_of(session, feedback_id=after) if after is not None else None
            if after is not None and after_seq is None:
                raise APIError(404, f"after: no feedback {after!r}", param="after", code="feedback_not_found")
            rows, has_more = await list_feedback(session, selection=chosen, limit=limit, after_seq=after_seq)
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(exc) from exc
    data = [feedback_json(r) for r in rows]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


Action = Literal["disable", "enable", "delete"]


async def act(db: DB, who: str, action: Action, body: FeedbackSelection) -> dict[str, Any]:
    """Apply ``action`` to the selection and audit it, in one transaction."""
    chosen = body.selection()
    try:
        async with db.sessions() as session:
            if action == "disable":
                ids = await disable(session, selection=chosen, reason=body.reason)
            elif action == "enable":
                ids = await enable(session, selection=chosen)
            else:
                ids = await delete_feedback(session, selection=chosen)
            details = {"selection": chosen.to_json(), "count": len(ids), "ids": ids[:MAX_IDS]}
            target = " ".join(f"{k}={v}" for k, v in chosen.to_json().items())[:128]
            await audit(
                session,
                who=who,
                action=f"feedback_{action}",
                target=target,
                reason=body.reason,
                details=details,
            )
            await session.commit()
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(exc) from exc
    return {"object": "feedback.action", "action": action, **details}


@router.post("/disable", **doc(errors=(503,)))
async def feedback_disable(db: DB, who: Admin, body: FeedbackSelection) -> dict[str, Any]:
    """Disable the selected feedback: kept, listed, never used by the learner; audited."""
    return await act(db, who, "disable", body)


@router.post("/enable", **doc(errors=(503,)))
async def feedback_enable(db: DB, who: Admin, body: FeedbackSelection) -> dict[str, Any]:
    """Enable the selected disabled feedback again; audited. An item no round has passed yet
    may train again; one a round passed over while it was disabled stays behind the cursor."""
    return await act(db, who, "enable", body)


@router.post("/delete", **doc(errors=(503,)))
async def feedback_delete(db: DB, who: Admin, body: FeedbackSelection) -> dict[str, Any]:
    """Delete the selected feedback for good; audited (the ids stay in the audit row)."""
    return await act(db, who, "delete", body)
