"""Reads of interactions and feedback: small keyword-only functions over an ``AsyncSession``.

The learner reads a round's feedback with :func:`feedback_since`, a cursor over ``feedback.seq``
that returns each feedback item joined with its interaction (messages, response, version)::

    async with db.sessions() as session:
        page = await feedback_since(session, after_id=last_round.feedback_to_seq or 0, limit=5000)
    for item in page.items: ...            # FeedbackItem: reward/label/correction/reference/...
    next_cursor = page.next_after_id       # store it on the learner run (feedback_to_seq)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import Feedback, IdempotencyKey, Interaction


async def existing_completion_ids(
    session: AsyncSession, *, ids: list[str], caller: str | None = None
) -> set[str]:
    """Which of ``ids`` have a stored interaction (of ``caller``, when given)."""
    if not ids:
        return set()
    stmt = select(Interaction.id).where(Interaction.id.in_(ids))
    if caller is not None:
        stmt = stmt.where(Interaction.caller == caller)
    return set(await session.scalars(stmt))


async def get_idempotency(
    session: AsyncSession, *, caller: str, key: str, after: datetime | None = None
) -> IdempotencyKey | None:
    """The stored record under ``(caller, key)``, if any (created after ``after``, when given)."""
    found = await session.get(IdempotencyKey, (caller, key))
    if found is not None and after is not None and found.created_at <= after:
        return None  # expired; the periodic prune deletes it
    return found


async def feedback_for_completion(
    session: AsyncSession, *, completion_id: str, caller: str | None = None
) -> list[Feedback]:
    """All stored feedback on one completion (sent by ``caller``, when given), oldest first."""
    stmt = select(Feedback).where(Feedback.completion_id == completion_id)
    if caller is not None:
        stmt = stmt.where(Feedback.caller == caller)
    return list(await session.scalars(stmt.order_by(Feedback.seq)))


@dataclass(frozen=True)
class InteractionFilter:
    """Filters of the admin listing and export (all optional, combined with AND)."""

    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    version: str | None = None
    has_feedback: bool | None = None
    caller: str | None = None


def _filtered(stmt: Select, f: InteractionFilter) -> Select:
    if f.since is not None:
        stmt = stmt.where(Interaction.created_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(Interaction.created_at < f.until)
    if f.version is not None:
        stmt = stmt.where(Interaction.model_version == f.version)
    if f.caller is not None:
        stmt = stmt.where(Interaction.caller == f.caller)
    if f.has_feedback is not None:
        rated = exists().where(Feedback.completion_id == Interaction.id)
        stmt = stmt.where(rated if f.has_feedback else ~rated)
    return stmt


class UnknownCursor(LookupError):
    """The ``after`` cursor names no stored interaction."""


@dataclass
class InteractionPage:
    rows: list[tuple[Interaction, int]]  # (interaction, number of feedback items)
    has_more: bool


async def list_interactions(
    session: AsyncSession,
    *,
    filters: InteractionFilter,
    limit: int = 50,
    after: str | None = None,
    descending: bool = True,
) -> InteractionPage:
    """One page of interactions with their feedback counts (keyset paging on ``seq``).

    Args:
        filters: time range, version, has-feedback, caller.
        limit: page size.
        after: the id of the last interaction of the previous page (exclusive cursor).
        descending: newest first (the default) or oldest first.

    Raises:
        UnknownCursor: ``after`` is not a stored interaction id.
    """
    counts = (
        select(func.count(Feedback.seq)).where(Feedback.completion_id == Interaction.id)
    ).scalar_subquery()
    stmt = _filtered(select(Interaction, counts), filters)
    if after is not None:
        seq = await session.scalar(select(Interaction.seq).where(Interaction.id == after))
        if seq is None:
            raise UnknownCursor(after)
        stmt = stmt.where(Interaction.seq < seq if descending else Interaction.seq > seq)
    order = Interaction.seq.desc() if descending else Interaction.seq.asc()
    result = await session.execute(stmt.order_by(order).limit(limit + 1))
    rows = [(interaction, count) for interaction, count in result.all()]
    return InteractionPage(rows[:limit], len(rows) > limit)


async def iter_interactions(
    sessions: async_sessionmaker[AsyncSession], *, filters: InteractionFilter, page_size: int = 500
) -> AsyncIterator[tuple[Interaction, list[Feedback]]]:
    """Every matching interaction, oldest first, with its feedback (for the JSONL export).

    Each page uses its own short session, so a slow reader never holds a transaction open.
    """
    last_seq = 0
    while True:
        async with sessions() as session:
            stmt = _filtered(select(Interaction), filters).where(Interaction.seq > last_seq)
            page = list(await session.scalars(stmt.order_by(Interaction.seq).limit(page_size)))
            ids = [i.id for i in page]
            fb = (
                await session.scalars(
                    select(Feedback).where(Feedback.completion_id.in_(ids)).order_by(Feedback.seq)
                )
                if ids
                else []
            )
            by_id: dict[str, list[Feedback]] = {}
            for item in fb:
                by_id.setdefault(item.completion_id, []).append(item)
        for interaction in page:
            yield interaction, by_id.get(interaction.id, [])
        if len(page) < page_size:
            return
        last_seq = page[-1].seq


@dataclass
class FeedbackItem:
    """One feedback item joined with its interaction, as the learner consumes it."""

    seq: int
    feedback: Feedback
    interaction: Interaction | None  # None only for orphans (see feedback_since)

    @property
    def messages(self) -> list[Any]:
        return self.interaction.messages if self.interaction else []

    @property
    def response(self) -> str | None:
        """The rated reply (the feedback's choice; choice 0 for n=1 completions)."""
        if self.interaction is None:
            return None
        for choice in self.interaction.choices:
            if choice.get("index") == self.feedback.choice_index:
                return (choice.get("message") or {}).get("content") or ""
        return self.interaction.response


@dataclass
class FeedbackPage:
    items: list[FeedbackItem] = field(default_factory=list)
    next_after_id: int = 0  # pass as ``after_id`` next time
    disabled: int = 0  # disabled items the cursor passed over (not in ``items``)


async def feedback_since(
    session: AsyncSession,
    *,
    after_id: int = 0,
    limit: int = 1000,
    settle_s: float = 5.0,
    orphan_after_s: float = 600.0,
) -> FeedbackPage:
    """Feedback stored after the cursor ``after_id``, joined with its interaction, in order.

    The scan stops (and the cursor stays) before the first item that is not settled yet, so
    nothing is skipped: an item stored less than ``settle_s`` ago (a concurrent writer may still
    commit a smaller ``seq``), or whose interaction is not stored yet (feedback may overtake its
    interaction in the ingest stream). An item whose interaction is still missing after
    ``orphan_after_s`` is returned with ``interaction=None`` rather than blocking forever.
    A settled item an operator disabled is never returned: the cursor passes it, and
    ``disabled`` counts it.

    Args:
        after_id: the ``next_after_id`` of the previous page (0 for everything).
        limit: most items returned.
        settle_s: age an item must have before it is handed out.
        orphan_after_s: age after which a feedback item without interaction is given up on.

    Returns:
        The items and the cursor to pass next time.
    """
    now = datetime.now(UTC)
    stmt = (
        select(Feedback, Interaction)
        .outerjoin(Interaction, Interaction.id == Feedback.completion_id)
        .where(Feedback.seq > after_id)
        .order_by(Feedback.seq)
        .limit(limit)
    )
    page = FeedbackPage(next_after_id=after_id)
    for fb, interaction in (await session.execute(stmt)).all():
        age = now - fb.stored_at
        if age < timedelta(seconds=settle_s):
            break
        if fb.disabled_at is not None:
            page.disabled += 1
            page.next_after_id = fb.seq
            continue
        if interaction is None and age < timedelta(seconds=orphan_after_s):
            break
        page.items.append(FeedbackItem(fb.seq, fb, interaction))
        page.next_after_id = fb.seq
    return page


async def feedback_newest_first(
    session: AsyncSession,
    *,
    upto_seq: int,
    keep: Callable[[Feedback], bool],
    limit: int,
    scan: int,
    page_size: int = 500,
) -> list[FeedbackItem]:
    """Feedback with ``seq <= upto_seq`` that ``keep`` accepts, newest first, with its interaction.

    The learner's held-out pool (``learner.feedback_items.heldout_pool``): ``keep`` is its stable
    split, a hash of the completion id, which SQL cannot compute. Pages of ``page_size`` are read
    down from ``upto_seq`` (a cursor already settled by :func:`feedback_since`) until ``limit``
    rows are kept or ``scan`` rows read. Disabled items and orphans (no interaction) are passed over.
    """
    out: list[FeedbackItem] = []
    below, read = upto_seq + 1, 0
    while len(out) < limit and read < scan:
        stmt = (
            select(Feedback, Interaction)
            .join(Interaction, Interaction.id == Feedback.completion_id)
            .where(Feedback.seq < below, Feedback.disabled_at.is_(None))
            .order_by(Feedback.seq.desc())
            .limit(min(page_size, scan - read))
        )
        rows = (await session.execute(stmt)).all()
        for fb, interaction in rows:
            if keep(fb) and len(out) < limit:
                out.append(FeedbackItem(fb.seq, fb, interaction))
        read += len(rows)
        if len(rows) < page_size:
            break
        below = rows[-1][0].seq
    return out
