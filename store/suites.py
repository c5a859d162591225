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


async def cached_score(
    session: AsyncSession, *, suite: str, suite_version: str, sha256: str, model_version: str
) -> SuiteScore | None:
    stmt = select(SuiteScore).where(
        SuiteScore.suite == suite,
        SuiteScore.suite_version == suite_version,
        SuiteScore.model_version == model_version,
    )
    row = await session.scalar(stmt)
    return row if row is not None and (row.details or {}).get("sha256") == sha256 else None


async def store_score(
    session: AsyncSession,
    *,
    suite: str,
    suite_version: str,
    sha256: str,
    model_version: str,
    score: float,
    n: int,
    details: dict[str, Any] | None = None,
) -> None:
    stmt = select(SuiteScore).where(
        SuiteScore.suite == suite,
        SuiteScore.suite_version == suite_version,
        SuiteScore.model_version == model_version,
    )
    row = await session.scalar(stmt)
    if row is None:
        row = SuiteScore(suite=suite, suite_version=suite_version, model_version=model_version)
        session.add(row)
    row.score, row.n, row.details = score, n, {**(details or {}), "sha256": sha256}
    await session.flush()


async def scores_for_version(session: AsyncSession, *, model_version: str) -> list[SuiteScore]:
    stmt = select(SuiteScore).where(SuiteScore.model_version == model_version)
    return list(await session.scalars(stmt.order_by(SuiteScore.suite)))
