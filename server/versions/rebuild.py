"""Rebuild a version whose snapshot was dropped: find the chain, replay it, verify, one at a time.

:class:`Rebuilder` walks the registry from the target up its ``parent_id`` links to the nearest
version whose weights are still on disk (the base always is), replays the seed logs of the
versions in between (``weights.lineage.rebuild``, in a worker thread: it is CPU work) and writes
the target's snapshot back to its own directory, verified by the recorded checksums. Progress
(generation i of n, iteration j of k) is kept per version for ``GET
/admin/versions/{id}/rebuild`` and the CLI. A promotion or rollback to a dropped version calls
:meth:`Rebuilder.ensure` before its verified swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from server.errors import APIError
from store.db import Database
from store.retention import weights_bytes
from store.versions import BASE, audit, get_version
from weights.lineage import Generation, RebuildError, rebuild
from weights.meta import SnapshotMeta

log = logging.getLogger(__name__)


async def rebuild_chain(db: Database, version_id: str) -> tuple[str, Path, Path, list[Generation], Path]:
    """(start id, start dir, base dir, generations to replay, target dir) for ``version_id``."""
    async with db.sessions() as session:
        base = await get_version(session, version_id=BASE)
        target = await get_version(session, version_id=version_id)
        if target is None:
            raise APIError(404, f"no version {version_id!r}", param="version", code="version_not_found")
        if not target.snapshot_path:
            raise APIError(409, f"{version_id} has no snapshot directory", code="no_snapshot")
        chain: list[Generation] = []
        node = target
        while not weights_bytes(node.snapshot_path):
            if node.id == BASE or node.parent_id is None:
                raise APIError(
                    409,
                    f"cannot rebuild {version_id}: {node.id} has no stored ancestor",
                    code="not_rebuildable",
                )
            chain.append(Generation(node.id, SnapshotMeta.model_validate(node.meta)))
            node = await get_version(session, version_id=node.parent_id)
            if node is None:
                raise APIError(
                    409, f"cannot rebuild {version_id}: a parent row is missing", code="not_rebuildable"
                )
        return (
            node.id,
            Path(node.snapshot_path),
            Path(base.snapshot_path),
            chain[::-1],
            Path(target.snapshot_path),
        )


class Rebuilder:
    """One rebuild at a time; the progress of each (running or last finished) by version."""

    def __init__(self, db: Database):
        self.db = db
        self.lock = asyncio.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task] = set()

    def status(self, version_id: str) -> dict[str, Any] | None:
        return self.jobs.get(version_id)

    def start(self, version_id: str, *, who: str) -> dict[str, Any]:
        """Start a rebuild in the background (a no-op if that version is rebuilding already)."""
        job = self.jobs.get(version_id)
        if job is None or job["state"] not in ("queued", "running"):
            self.jobs[version_id] = {"version": version_id, "state": "queued", "progress": None}
            task = asyncio.create_task(self._background(version_id, who))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return self.jobs[version_id]

    async def _background(self, version_id: str, who: str) -> None:
        try:
            await self.ensure(version_id, who=who)
        except APIError:
            pass  # recorded in the job
        except Exception:  # noqa: BLE001 - reported through the job, never raised into the loop
            log.exception("rebuild of %s failed", version_id)

    async def ensure(self, version_id: str, *, who: str) -> dict[str, Any]:
        """Make ``version_id``'s weights present (rebuilt if dropped); return the job record."""
        async with self.lock:
            job = self.jobs.setdefault(
                version_id, {"version": version_id, "state": "queued", "progress": None}
            )
            try:
                start, start_dir, base_dir, chain, out_dir = await rebuild_chain(self.db, version_id)
            except APIError as exc:
                job.update(state="failed", error=exc.message)
                raise
            if not chain:
                job.update(state="present", progress=None)
                return job
            job.update(state="running", start=start, started_at=time.time(), error=None)
            loop = asyncio.get_running_loop()

            def progress(p: dict) -> None:  # called from the worker thread
                loop.call_soon_threadsafe(job.__setitem__, "progress", p)

            log.info("rebuilding %s from %s: %d generation(s)", version_id, start, len(chain))
            try:
                report = await asyncio.to_thread(
                    rebuild,
                    chain,
                    start=start,
                    start_dir=start_dir,
                    base_dir=base_dir,
                    out_dir=out_dir,
                    progress=progress,
                )
            except RebuildError as exc:
                job.update(state="failed", error=str(exc))
                await self._audit(who, version_id, "rebuild_failed", {"error": str(exc), "start": start})
                raise APIError(409, f"rebuild of {version_id} failed: {exc}", code="rebuild_failed") from exc
            job.update(state="done", report=report.to_json())
            await self._audit(who, version_id, "rebuild", report.to_json())
            log.info("rebuilt %s from %s in %.1f s", version_id, start, report.seconds)
            return job

    async def _audit(self, who: str, version_id: str, action: str, details: dict) -> None:
        async with self.db.sessions() as session:
            await audit(session, who=who, action=action, target=version_id, details=details)
            await session.commit()
