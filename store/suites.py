"""Prior-capability suites in the store, and cached suite scores per model version.

Built-in suites are registered from the files shipped in ``evals/suites/data`` (path and
sha256); operator suites keep their uploaded JSONL in ``content``. A score is cached per
(suite, suite version, model version) together with the suite's content sha256 in
``details``: a cached score counts only while the content it was measured on is unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import EvalSuite, SuiteScore


async def list_suites(session: AsyncSession, *, enabled_only: bool = False) -> list[EvalSuite]:
    stmt = select(EvalSuite).order_by(EvalSuite.name, EvalSuite.version)
    if enabled_only:
        stmt = stmt.where(EvalSuite.enabled.is_(True))
    return list(await session.scalars(stmt))


async def get_suite(session: AsyncSession, *, name: str, version: str) -> EvalSuite | None:
    stmt = select(EvalSuite).where(EvalSuite.name == name, EvalSuite.version == version)
    return await session.scalar(stmt)


async def upsert_suite(
    session: AsyncSession,
    *,
    name: str,
    version: str,
    skill: str | None,
    source: str,
    sha256: str,
    n_items: int,
    items_path: str | None = None,
    content: str | None = None,
) -> EvalSuite:
    """Insert, or refresh an existing row of the same name and version (keeps ``enabled``)."""
    row = await get_suite(session, name=name, version=version)
    if row is None:
        row = EvalSuite(name=name, version=version, enabled=True)
        session.add(row)
    row.skill, row.source, row.sha256, row.n_items = skill, source, sha256, n_items
    row.items_path, row.content = items_path, content
    await session.flush()
    return row


async def cached_items(
    session: AsyncSession, *, suite: str, suite_version: str, sha256: str, model_version: str
) -> dict[str, float] | None:
    """A version's item scores on the suite content ``sha256`` (a whole suite, or one slice of
    it that the sequential gate scores at one look), or None if that content is not cached."""
    row = await _row(session, suite, suite_version, model_version)
    details = (row.details or {}) if row is not None else {}
    items, ids = details.get("items") or {}, _slices(details).get(sha256)
    if ids is None or any(i not in items for i in ids):
        return None
    return {i: items[i] for i in ids}


async def store_score(
    session: AsyncSession,
    *,
    suite: str,
    suite_version: str,
    sha256: str,
    model_version: str,
    items: dict[str, float],
    details: dict[str, Any] | None = None,
) -> None:
    """Cache a version's item scores on the suite content ``sha256``.

    One row per (suite, suite version, model version) holds every slice scored for it: the
    item scores joined, and each content's sha with its item ids, so a slice cached at one look
    is found again at the next round's. ``score`` and ``n`` are over every item held.
    """
    row = await _row(session, suite, suite_version, model_version)
    if row is None:
        row = SuiteScore(suite=suite, suite_version=suite_version, model_version=model_version)
        session.add(row)
    old = row.details or {}
    joined = {**(old.get("items") or {}), **items}
    slices = {**_slices(old), sha256: list(items)}
    row.score, row.n = (sum(joined.values()) / len(joined) if joined else 0.0), len(joined)
    # a new dict, so that the JSON column is written
    row.details = {**(details or {}), "items": joined, "slices": slices}
    await session.flush()


async def _row(
    session: AsyncSession, suite: str, suite_version: str, model_version: str
) -> SuiteScore | None:
    stmt = select(SuiteScore).where(
        SuiteScore.suite == suite,
        SuiteScore.suite_version == suite_version,
        SuiteScore.model_version == model_version,
    )
    return await session.scalar(stmt)


def _slices(details: dict[str, Any]) -> dict[str, list[str]]:
    if "slices" in details:
        return details["slices"]
    # written before slices were kept: one content, its sha and all its items
    if "sha256" in details and "items" in details:
        return {details["sha256"]: list(details["items"])}
    return {}


async def scores_for_version(session: AsyncSession, *, model_version: str) -> list[SuiteScore]:
    stmt = select(SuiteScore).where(SuiteScore.model_version == model_version)
    return list(await session.scalars(stmt.order_by(SuiteScore.suite)))
