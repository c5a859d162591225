"""Versions service: which weights serve, promotion (gated unless forced), rollback, audit.

Every change of the served weights goes through :meth:`VersionService.promote` or
:meth:`VersionService.rollback`: a hot swap (``swap.py``) verified by the engine's weight
checksum (a version served before must come back with the checksum it had) and a smoke prompt,
then the registry marks the version serving and the audit log records who, when and why. A
failed swap leaves the previous version serving and is audited too.

At start, :func:`boot_version` picks the version to serve: the one marked serving in the
registry (so a restarted server serves the last promoted version, not the base).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends

from server.deps import state
from server.errors import APIError
from server.versions.coordination import SwapBusy
from server.versions.rebuild import Rebuilder
from server.versions.swap import HotSwapper, SwapError, SwapTarget
from store.db import Database
from store.models import ModelVersion
from store.retention import RetentionPolicy, enforce, weights_bytes
from store.versions import (
    BASE,
    audit,
    ensure_base,
    get_version,
    latest_decision,
    mark_serving,
    previous_served,
    serving_version,
    set_status,
)
from weights.lineage import can_replay, seed_log_bytes
from weights.meta import SnapshotMeta

log = logging.getLogger(__name__)

ENGINE_WAIT_S = 300.0  # how long a promotion waits for a restarting serving engine


@dataclass
class BootVersion:
    """What the engine should load at start."""

    version: str
    path: Path
    engine_checksum: str | None


async def boot_version(db: Database, base_dir: Path, base_sha256: str | None) -> BootVersion:
    """The serving version from the registry (creating ``base`` on a fresh database).

    A serving version whose weights are gone is rebuilt from its seed log; if that fails too,
    the base serves and the fallback is audited.
    """
    async with db.sessions() as session:
        base = await ensure_base(session, snapshot_path=str(base_dir), sha256=base_sha256)
        current = await serving_version(session) or base
        path = Path(current.snapshot_path or base_dir)
        if current.id != BASE and not weights_bytes(path):
            await session.commit()  # no open write while the rebuild audits in its own session
            try:
                await Rebuilder(db).ensure(current.id, who="system")
                return BootVersion(current.id, path, current.engine_checksum)
            except APIError as exc:
                log.error("could not rebuild serving version %s: %s", current.id, exc.message)
            log.error("snapshot of serving version %s is missing at %s; serving base", current.id, path)
            await audit(
                session,
                who="system",
                action="boot_fallback",
                target=BASE,
                reason=f"snapshot of {current.id} missing at {path}",
            )
            await mark_serving(session, version_id=BASE, engine_checksum=base.engine_checksum or "")
            current, path = base, base_dir
        await session.commit()
        return BootVersion(current.id, path, current.engine_checksum)


def version_json(v: ModelVersion, decision: Any = None) -> dict[str, Any]:
    return {
        "id": v.id,
        "parent": v.parent_id,
        "status": v.status,
        "serving": v.serving,
        "snapshot_path": v.snapshot_path,
        "sha256": v.sha256,
        "engine_checksum": v.engine_checksum,
        "disk": version_disk(v),
        "metrics": v.metrics,
        "created_at": v.created_at.isoformat() if v.created_at else None,
        "promoted_at": v.promoted_at.isoformat() if v.promoted_at else None,
        "served_at": v.served_at.isoformat() if v.served_at else None,
        "gate": None
        if decision is None
        else {
            "promote": decision.promote,
            "reasons": decision.reasons,
            "checks": decision.checks,
            "at": decision.created_at.isoformat() if decision.created_at else None,
        },
    }


def version_disk(v: ModelVersion) -> dict[str, Any]:
    """What a version holds on disk: its weights (0 once dropped) and its seed log."""
    stored = weights_bytes(v.snapshot_path)
    log_bytes = None
    if v.meta and v.id != BASE:
        try:
            log_bytes = seed_log_bytes(SnapshotMeta.model_validate(v.meta))
        except ValueError:  # a row written by hand (tests, imports): no seed log to size
            log_bytes = None
    return {"weights_bytes": stored, "stored": stored > 0, "seed_log_bytes": log_bytes}


class VersionService:
    """Promote and roll back through the hot swapper, keeping the registry and audit log.

    A version whose weights the retention policy dropped is rebuilt from its seed log first
    (``rebuilder``); after every change of the served version the policy runs again.
    """

    def __init__(self, db: Database, swapper: HotSwapper, retention: RetentionPolicy | None = None):
        self.db = db
        self.swapper = swapper
        self.rebuilder = Rebuilder(db)
        self.retention = retention

    async def enforce_retention(self, who: str = "system") -> dict | None:
        """Drop the snapshots the policy does not keep (None without a policy)."""
        if self.retention is None:
            return None
        async with self.db.sessions() as session:
            report = await enforce(session, self.retention, can_replay, who=who)
            await session.commit()
        if report["drop"]:
            log.info("retention: dropped %s (%d bytes)", report["drop"], report["freed_bytes"])
        return report

    async def record_boot(self, checksum: str) -> None:
        """Store the engine checksum of the version the engine started with."""
        async with self.db.sessions() as session:
            await mark_serving(session, version_id=self.swapper.current.version, engine_checksum=checksum)
            await session.commit()
        self.swapper.current.checksum = checksum

    async def promote(
        self, version_id: str, *, who: str, reason: str | None = None, force: bool = False
    ) -> dict:
        """Serve ``version_id``. Needs a passing gate decision, or ``force`` with a reason."""
        async with self.db.sessions() as session:
            version = await self._get(session, version_id)
            if version.serving:
                raise APIError(409, f"{version_id} is already serving", code="already_serving")
            decision = await latest_decision(session, version_id=version_id)
            approved = version.status == "promoted" or bool(decision and decision.promote)
            if not approved and not force:
                why = "; ".join(map(str, decision.reasons)) if decision else "no gate decision yet"
                raise APIError(
                    409,
                    f"{version_id} is not approved by the gate ({why}); "
                    "set force=true with a reason to override",
                    code="gate_not_passed",
                )
            if force and not approved and not (reason or "").strip():
                raise APIError(400, "a forced promotion needs a reason", param="reason")
            action = "promote" if approved else "force_promote"
            return await self._serve(session, version, who=who, action=action, reason=reason)

    async def rollback(self, *, who: str, to: str | None = None, reason: str | None = None) -> dict:
        """Serve ``to``, or the promoted version that served before the current one."""
        async with self.db.sessions() as session:
            current = await serving_version(session)
            if to is None:
                target = await previous_served(session, current_id=current.id if current else "")
                if target is None:
                    raise APIError(409, "no earlier served version to roll back to", code="no_target")
            else:
                target = await self._get(session, to)
            if target.serving:
                raise APIError(409, f"{target.id} is already serving", code="already_serving")
            if target.status != "promoted":
                raise APIError(
                    409,
                    f"{target.id} is {target.status}; only promoted versions can serve",
                    code="not_promoted",
                )
            return await self._serve(session, target, who=who, action="rollback", reason=reason)

    async def _get(self, session, version_id: str) -> ModelVersion:
        version = await get_version(session, version_id=version_id)
        if version is None:
            raise APIError(404, f"no version {version_id!r}", param="version", code="version_not_found")
        return version

    async def _serve(
        self, session, version: ModelVersion, *, who: str, action: str, reason: str | None
    ) -> dict:
        if self.swapper.busy:
            raise APIError(409, "another swap is in progress", code="swap_in_progress")
        if not version.snapshot_path:
            raise APIError(409, f"{version.id} has no snapshot", code="no_snapshot")
        if not await self.swapper.engine.wait_ready(ENGINE_WAIT_S):  # e.g. restarting after a crash
            raise APIError(
                503,
                "the serving engine is not available; nothing changed",
                code="engine_unavailable",
                headers={"Retry-After": "30"},
            )
        if not weights_bytes(version.snapshot_path):  # dropped by the retention policy
            await self.rebuilder.ensure(version.id, who=who)
        previous = self.swapper.current.version
        target = SwapTarget(version.id, Path(version.snapshot_path), version.engine_checksum, version.sha256)

        async def record(report) -> None:
            # inside the rolling swap: a gateway that reads the served version next sees this one
            if version.status != "promoted":
                await set_status(session, version_id=version.id, status="promoted")
            await mark_serving(session, version_id=version.id, engine_checksum=report.checksum)
            await audit(
                session,
                who=who,
                action=action,
                target=version.id,
                reason=reason,
                details={"from": previous, **report.to_json()},
            )
            await session.commit()

        try:
            report = await self.swapper.swap(target, on_served=record)
        except SwapBusy as exc:
            raise APIError(409, str(exc), code="swap_in_progress") from exc
        except SwapError as exc:
            await audit(
                session,
                who=who,
                action=f"{action}_failed",
                target=version.id,
                reason=reason,
                details={
                    "error": str(exc),
                    "restored": exc.restored,
                    "serving": previous,
                    "rolled_back": exc.rolled_back,
                },
            )
            await session.commit()
            raise APIError(
                502,
                f"{exc}; {'still serving ' + previous if exc.restored else 'restore failed'}",
                code="swap_failed",
            ) from exc
        await self.enforce_retention(who="system")
        log.info(
            "%s: now serving %s (was %s, pause %.2f s)",
            action,
            version.id,
            previous,
            report.pause_to_resume_s,
        )
        return {"serving": version.id, "previous": previous, "swap": report.to_json()}


# The routes' view of the service the lifespan keeps on app.state (see server.versions.boot).
Versions = Annotated[VersionService, Depends(state("versions"))]
