"""The version registry: model versions, which one serves, and the audit log.

Small keyword-only functions over an ``AsyncSession``; the caller commits. Version ids are
``base`` (the deployed original, the AWD anchor) and ``v1``, ``v2``, ... in creation order.
Statuses: ``candidate`` (made by a round, not judged yet), ``promoted`` (the gate passed, or an
operator forced it with a reason: eligible to serve), ``rejected`` (the gate failed),
``retired``. Exactly one version has ``serving = true``: the one the serving engine holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditLog, GateDecision, ModelVersion, utcnow

BASE = "base"


async def get_version(session: AsyncSession, *, version_id: str) -> ModelVersion | None:
    return await session.get(ModelVersion, version_id)


async def list_versions(session: AsyncSession, *, limit: int = 200) -> list[ModelVersion]:
    """Newest first."""
    stmt = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    return list(await session.scalars(stmt.limit(limit)))


async def ensure_base(session: AsyncSession, *, snapshot_path: str, sha256: str | None) -> ModelVersion:
    """The ``base`` row, created on first start as the promoted, serving version."""
    base = await session.get(ModelVersion, BASE)
    if base is None:
        now = utcnow()
        base = ModelVersion(
            id=BASE,
            status="promoted",
            snapshot_path=snapshot_path,
            sha256=sha256,
            metrics={},
            meta={"source": snapshot_path},
            promoted_at=now,
            served_at=now,
        )
        # Serving only if nothing else is (a fresh database).
        others = await session.scalar(select(func.count()).where(ModelVersion.serving.is_(True)))
        base.serving = not others
        session.add(base)
        await session.flush()
    return base


async def serving_version(session: AsyncSession) -> ModelVersion | None:
    return await session.scalar(select(ModelVersion).where(ModelVersion.serving.is_(True)))


async def next_version_id(session: AsyncSession) -> str:
    """``v<n+1>`` where n is the largest number used so far."""
    ids = await session.scalars(select(ModelVersion.id).where(ModelVersion.id.like("v%")))
    numbers = [int(i[1:]) for i in ids if i[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


async def add_candidate(
    session: AsyncSession,
    *,
    version_id: str,
    parent_id: str,
    snapshot_path: str,
    sha256: str | None,
    meta: dict[str, Any],
    metrics: dict[str, Any],
) -> ModelVersion:
    version = ModelVersion(
        id=version_id,
        parent_id=parent_id,
        status="candidate",
        snapshot_path=snapshot_path,
        sha256=sha256,
        meta=meta,
        metrics=metrics,
    )
    session.add(version)
    await session.flush()
    return version


async def set_status(session: AsyncSession, *, version_id: str, status: str) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "promoted":
        values["promoted_at"] = utcnow()
    await session.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(**values))


async def mark_serving(
    session: AsyncSession, *, version_id: str, engine_checksum: str, at: datetime | None = None
) -> None:
    """Make ``version_id`` the only serving version and record its engine checksum."""
    await session.execute(update(ModelVersion).where(ModelVersion.serving.is_(True)).values(serving=False))
    await session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(serving=True, served_at=at or utcnow(), engine_checksum=engine_checksum)
    )


async def previous_served(session: AsyncSession, *, current_id: str) -> ModelVersion | None:
    """The promoted version that served most recently before the current one (rollback target)."""
    stmt = (
        select(ModelVersion)
        .where(ModelVersion.id != current_id, ModelVersion.status == "promoted")
        .where(ModelVersion.served_at.is_not(None))
        .order_by(ModelVersion.served_at.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def latest_decision(session: AsyncSession, *, version_id: str) -> GateDecision | None:
    stmt = (
        select(GateDecision)
        .where(GateDecision.version == version_id)
        .order_by(GateDecision.created_at.desc(), GateDecision.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def record_decision(
    session: AsyncSession,
    *,
    version_id: str,
    promote: bool,
    reasons: list[Any],
    checks: dict[str, Any],
    round_id: int | None = None,
) -> GateDecision:
    decision = GateDecision(
        round_id=round_id, version=version_id, promote=promote, reasons=reasons, checks=checks
    )
    session.add(decision)
    await session.flush()
    return decision


async def audit(
    session: AsyncSession,
    *,
    who: str,
    action: str,
    target: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    entry = AuditLog(who=who, action=action, target=target, reason=reason, details=details or {})
    session.add(entry)
    await session.flush()
    return entry


async def audit_entries(session: AsyncSession, *, limit: int = 100) -> list[AuditLog]:
    stmt = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(limit)
    return list(await session.scalars(stmt))
