"""Operators' view of the ingest dead letters: list them, delete them, keep them bounded.

An ingest entry the database refused on its own (``store.ingest.persist_batch``) is kept in
``ingest_dead_letters`` with its error for a human. An entry may be as large as the request
that made it (a 1 MiB feedback batch), so a listing shows only its size and a short preview.
The table is bounded: :func:`prune_dead_letters` keeps the newest ``keep`` rows younger than
``max_age``; the ingest sink runs it with the Idempotency-Key prune (``store.sink``)::

    async with db.sessions() as session:
        rows, more = await list_dead_letters(session, limit=50)
        await delete_dead_letter(session, letter_id=rows[0].id)
        await session.commit()
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import IngestDeadLetter

PREVIEW_CHARS = 500  # of an entry's JSON text, in a listing
ERROR_CHARS = 1000  # of the database's error, in a listing


async def list_dead_letters(
    session: AsyncSession, *, limit: int = 50, after: IngestDeadLetter | None = None
) -> tuple[list[IngestDeadLetter], bool]:
    """One page, newest first (``created_at``, then ``id``), and whether more follows.

    ``after``: the last row of the page before (keyset paging: deletions meanwhile skip nothing).
    """
    t = IngestDeadLetter
    stmt = select(t)
    if after is not None:
        stmt = stmt.where(_older(after.created_at, after.id))
    rows = list(await session.scalars(stmt.order_by(t.created_at.desc(), t.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def _older(created_at: datetime, letter_id: str):
    """Rows after (``created_at``, ``id``) in the newest-first order."""
    t = IngestDeadLetter
    return or_(t.created_at < created_at, (t.created_at == created_at) & (t.id < letter_id))


async def get_dead_letter(session: AsyncSession, *, letter_id: str) -> IngestDeadLetter | None:
    return await session.get(IngestDeadLetter, letter_id)


async def delete_dead_letter(session: AsyncSession, *, letter_id: str) -> bool:
    """Delete one dead letter; False when there is none with that id."""
    result = await session.execute(delete(IngestDeadLetter).where(IngestDeadLetter.id == letter_id))
    return bool(result.rowcount)


async def count_dead_letters(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(IngestDeadLetter)) or 0)


async def prune_dead_letters(session: AsyncSession, *, keep: int, before: datetime | None = None) -> int:
    """Delete the dead letters created before ``before``, then all but the newest ``keep``;
    returns how many went."""
    t = IngestDeadLetter
    deleted = 0
    if before is not None:
        deleted += (await session.execute(delete(t).where(t.created_at < before))).rowcount or 0
    newest = select(t.created_at, t.id).order_by(t.created_at.desc(), t.id.desc()).offset(keep).limit(1)
    edge = (await session.execute(newest)).first()  # the newest row beyond the first ``keep``
    if edge is not None:
        stmt = delete(t).where(_older(edge.created_at, edge.id) | (t.id == edge.id))
        deleted += (await session.execute(stmt)).rowcount or 0
    return deleted
