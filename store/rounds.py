"""Learner rounds in the store: the run queue, per-iteration metrics, and the round lock.

A round is a ``rounds`` row: ``queued`` (asked for by the scheduler or an admin) ->
``running`` -> ``succeeded`` (the gate decided: ``decision`` is ``promoted`` or ``rejected``; or
no feedback item was usable: ``skipped``) or ``failed`` (``error`` says why) or ``cancelled``.
The feedback cursor moves with every succeeded round, a skipped one included, and never with a
failed one: a round that fails (an engine died) leaves its feedback to the next. Rounds never overlap: the runner holds the
``learner_locks`` row named ``round`` (expiring, renewed by a heartbeat), which works the same
on SQLite and Postgres and across processes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Feedback, LearnerLock, Round, RoundIteration, utcnow

ACTIVE = ("queued", "running")


class RoundBusy(Exception):
    """A round is queued or running already (``round`` is that one)."""

    def __init__(self, round: Round):
        super().__init__(f"round {round.id} is {round.status}")
        self.round = round


async def active_round(session: AsyncSession) -> Round | None:
    stmt = select(Round).where(Round.status.in_(ACTIVE)).order_by(Round.id).limit(1)
    return await session.scalar(stmt)


async def add_round(session: AsyncSession, *, config: dict[str, Any]) -> Round:
    run = Round(status="queued", config=config, metrics={})
    session.add(run)
    await session.flush()
    return run


async def next_queued(session: AsyncSession) -> Round | None:
    stmt = select(Round).where(Round.status == "queued").order_by(Round.id).limit(1)
    return await session.scalar(stmt)


async def get_round(session: AsyncSession, *, round_id: int) -> Round | None:
    return await session.get(Round, round_id)


async def list_rounds(session: AsyncSession, *, limit: int = 50) -> list[Round]:
    stmt = select(Round).order_by(Round.id.desc()).limit(limit)
    return list(await session.scalars(stmt))


async def update_round(session: AsyncSession, *, round_id: int, **values: Any) -> None:
    await session.execute(update(Round).where(Round.id == round_id).values(**values))


async def add_iteration(session: AsyncSession, *, round_id: int, iteration: int, metrics: dict) -> None:
    session.add(RoundIteration(round_id=round_id, iteration=iteration, metrics=metrics))
    await session.flush()


async def iterations(session: AsyncSession, *, round_id: int) -> list[RoundIteration]:
    stmt = (
        select(RoundIteration).where(RoundIteration.round_id == round_id).order_by(RoundIteration.iteration)
    )
    return list(await session.scalars(stmt))


async def feedback_cursor(session: AsyncSession) -> int:
    """The feedback ``seq`` up to which finished rounds have consumed feedback."""
    stmt = select(func.max(Round.feedback_to_seq)).where(Round.status == "succeeded")
    return int(await session.scalar(stmt) or 0)


async def count_feedback_after(session: AsyncSession, *, after_seq: int) -> int:
    """Enabled feedback after ``after_seq``: disabled items never ask for a round."""
    stmt = select(func.count()).where(Feedback.seq > after_seq, Feedback.disabled_at.is_(None))
    return int(await session.scalar(stmt) or 0)


async def fail_interrupted(session: AsyncSession, *, reason: str) -> int:
    """Mark ``running`` rounds failed (their process died); returns how many."""
    result = await session.execute(
        update(Round)
        .where(Round.status == "running")
        .values(status="failed", error=reason, finished_at=utcnow())
    )
    return result.rowcount or 0


async def acquire_lock(session: AsyncSession, *, name: str, holder: str, ttl_s: float) -> bool:
    """Take ``name`` for ``holder`` unless someone else holds it unexpired; commits."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    taken = await session.execute(
        update(LearnerLock)
        .where(LearnerLock.name == name)
        .where((LearnerLock.expires_at < now) | (LearnerLock.holder == holder))
        .values(holder=holder, expires_at=expires)
    )
    if taken.rowcount:
        await session.commit()
        return True
    if await session.get(LearnerLock, name) is not None:
        await session.rollback()
        return False
    session.add(LearnerLock(name=name, holder=holder, expires_at=expires))
    try:
        await session.commit()
        return True
    except IntegrityError:  # another process inserted it first
        await session.rollback()
        return False


async def release_lock(session: AsyncSession, *, name: str, holder: str) -> None:
    await session.execute(delete(LearnerLock).where(LearnerLock.name == name, LearnerLock.holder == holder))
    await session.commit()
