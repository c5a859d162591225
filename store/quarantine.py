"""Operators' control of stored feedback: list it, disable or enable it, delete it.

Every action takes a :class:`Selection` (feedback ids, a caller, a time range on ``created_at``;
the criteria given are combined with AND) and returns the ids it changed, for the audit log. A
disabled item keeps its row with ``disabled_at`` and the reason; the learner's feedback scan
(``store.queries.feedback_since``) passes over it, so it never trains or measures::

    async with db.sessions() as session:
        ids = await disable(session, selection=Selection(caller="key_0123abcd4567"), reason="spam")
        await audit(session, who="admin", action="feedback_disable", details={"ids": ids})
        await session.commit()
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Feedback, utcnow


@dataclass(frozen=True)
class Selection:
    """Which feedback an action or a listing is about (all optional, combined with AND)."""

    ids: tuple[str, ...] | None = None
    caller: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    disabled: bool | None = None  # only disabled (True) or only enabled (False) items

    @property
    def empty(self) -> bool:
        """Names no item in particular (an action on it would touch every item)."""
        return self.ids is None and self.caller is None and self.since is None and self.until is None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("since", "until"):
            if key in out:
                out[key] = out[key].isoformat()
        if "ids" in out:
            out["ids"] = list(out["ids"])
        return out


def _where(stmt: Any, s: Selection) -> Any:
    if s.ids is not None:
        stmt = stmt.where(Feedback.id.in_(s.ids))
    if s.caller is not None:
        stmt = stmt.where(Feedback.caller == s.caller)
    if s.since is not None:
        stmt = stmt.where(Feedback.created_at >= s.since)
    if s.until is not None:
        stmt = stmt.where(Feedback.created_at < s.until)
    if s.disabled is not None:
        stmt = stmt.where(Feedback.disabled_at.is_not(None) if s.disabled else Feedback.disabled_at.is_(None))
    return stmt


async def list_feedback(
    session: AsyncSession, *, selection: Selection, limit: int = 50, after_seq: int | None = None
) -> tuple[list[Feedback], bool]:
    """One page of feedback, newest first, and whether more follows (keyset paging on ``seq``)."""
    stmt: Select = _where(select(Feedback), selection)
    if after_seq is not None:
        stmt = stmt.where(Feedback.seq < after_seq)
    rows = list(await session.scalars(stmt.order_by(Feedback.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


async def seq_of(session: AsyncSession, *, feedback_id: str) -> int | None:
    return await session.scalar(select(Feedback.seq).where(Feedback.id == feedback_id))


async def _ids(session: AsyncSession, selection: Selection) -> list[str]:
    stmt = _where(select(Feedback.id), selection).order_by(Feedback.seq)
    return list(await session.scalars(stmt))


async def disable(session: AsyncSession, *, selection: Selection, reason: str | None) -> list[str]:
    """Disable the selected enabled items; returns their ids (already disabled ones keep theirs)."""
    chosen = Selection(**{**asdict(selection), "disabled": False})
    ids = await _ids(session, chosen)
    if ids:
        stmt = update(Feedback).where(Feedback.id.in_(ids))
        await session.execute(stmt.values(disabled_at=utcnow(), disabled_reason=reason))
    return ids


async def enable(session: AsyncSession, *, selection: Selection) -> list[str]:
    """Enable the selected disabled items again; returns their ids."""
    ids = await _ids(session, Selection(**{**asdict(selection), "disabled": True}))
    if ids:
        stmt = update(Feedback).where(Feedback.id.in_(ids))
        await session.execute(stmt.values(disabled_at=None, disabled_reason=None))
    return ids


async def delete_feedback(session: AsyncSession, *, selection: Selection) -> list[str]:
    """Delete the selected items for good; returns their ids."""
    ids = await _ids(session, selection)
    if ids:
        await session.execute(delete(Feedback).where(Feedback.id.in_(ids)))
    return ids
