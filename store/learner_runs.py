"""Learner rounds in the store: the run queue, per-iteration metrics, and the round lock.

A round is a ``learner_runs`` row: ``queued`` (asked for by the scheduler or an admin) ->
``running`` -> ``succeeded`` (the gate decided: ``decision`` is ``promoted`` or ``rejected``) or
``failed`` (``error`` says why) or ``cancelled``. Rounds never overlap: the runner holds the
``learner_locks`` row named ``round`` (expiring, renewed by a heartbeat), which works the same
on SQLite and Postgres and across processes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Feedback, LearnerIteration, LearnerLock, LearnerRun, utcnow

ACTIVE = ("queued", "running")


async def active_run(session: AsyncSession) -> LearnerRun | None:
    stmt = select(LearnerRun).where(LearnerRun.status.in_(ACTIVE)).order_by(LearnerRun.id).limit(1)
    return await session.scalar(stmt)


async def enqueue_run(session: AsyncSession, *, config: dict[str, Any]) -> LearnerRun:
    run = LearnerRun(status="queued", config=config, metrics={})
    session.add(run)
    await session.flush()
    return run


async def next_queued(session: AsyncSession) -> LearnerRun | None:
    stmt = select(LearnerRun).where(LearnerRun.status == "queued").order_by(LearnerRun.id).limit(1)
    return await session.scalar(stmt)


async def get_run(session: AsyncSession, *, run_id: int) -> LearnerRun | None:
    return await session.get(LearnerRun, run_id)


async def list_runs(session: AsyncSession, *, limit: int = 50) -> list[LearnerRun]:
    stmt = select(LearnerRun).order_by(LearnerRun.id.desc()).limit(limit)
    return list(await session.scalars(stmt))


async def update_run(session: AsyncSession, *, run_id: int, **values: Any) -> None:
    await session.execute(update(LearnerRun).where(LearnerRun.id == run_id).values(**values))


async def add_iteration(session: AsyncSession, *, run_id: int, iteration: int, metrics: dict) -> None:
    session.add(LearnerIteration(run_id=run_id, iteration=iteration, metrics=metrics))
    await session.flush()


async def iterations(session: AsyncSession, *, run_id: int) -> list[LearnerIteration]:
    stmt = (
        select(LearnerIteration).where(LearnerIteration.run_id == run_id).order_by(LearnerIteration.iteration)
    )
    return list(await session.scalars(stmt))


async def feedback_cursor(session: AsyncSession) -> int:
    """The feedback ``seq`` up to which finished rounds have consumed feedback."""
    stmt = select(func.max(LearnerRun.feedback_to_seq)).where(LearnerRun.status == "succeeded")
    return int(await session.scalar(stmt) or 0)


async def count_feedback_after(session: AsyncSession, *, after_seq: int) -> int:
    return int(await session.scalar(select(func.count()).where(Feedback.seq > after_seq)) or 0)


async def fail_interrupted(session: AsyncSession, *, reason: str) -> int:
    """Mark ``running`` rounds failed (their process died); returns how many."""
    result = await session.execute(
        update(LearnerRun)
        .where(LearnerRun.status == "running")
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
