"""Snapshots as a cache: which versions keep their weights on disk, and a disk budget.

Every version stays in the registry with its seed log (``meta``: a few kilobytes) and its gate
decision; only the weights file of a version is a cache, rebuilt from its nearest stored
ancestor when it is needed again (``weights.lineage``). :func:`plan` decides, from the registry
rows and the bytes each snapshot holds, what to keep and why::

    base                   always (every chain starts there)
    serving                the version the engine holds
    previous               the version that served before it: rollback stays instant
    candidate              a version still being judged (and its parent)
    no_seed_log            a version that cannot be rebuilt (registered by hand, an old row)
    last_promoted          the newest ``keep_promoted`` promoted versions
    checkpoint             every ``checkpoint_every``-th generation of a promoted lineage
                           (bounds how long a rebuild replays)
    grace                  a rejected candidate younger than ``rejected_grace_s``

Everything else is dropped. With a ``budget_bytes`` the droppable kinds (``last_promoted``,
``checkpoint``, ``grace``) are dropped too, oldest first, until the kept snapshots fit; the
first four are never dropped (the plan says when they alone exceed the budget).
:func:`apply` deletes the weights files of the dropped versions (their ``meta.json``, sidecar
files and rows stay) and returns what it freed. ``plan`` is pure and table-tested.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ModelVersion, utcnow
from store.versions import audit

PROTECTED = ("base", "serving", "previous", "candidate", "no_seed_log")
WEIGHT_GLOB = "*.safetensors"


@dataclass(frozen=True)
class RetentionPolicy:
    keep_promoted: int = 3
    checkpoint_every: int = 10  # 0: no checkpoints
    rejected_grace_s: float = 3600.0
    budget_bytes: int | None = None


@dataclass(frozen=True)
class VersionDisk:
    """What the policy needs to know of one version."""

    id: str
    parent_id: str | None
    status: str
    serving: bool
    created_at: datetime
    promoted_at: datetime | None
    served_at: datetime | None
    bytes: int  # of its weights files on disk (0: dropped already)
    replayable: bool = True  # its seed log can rebuild it (else its weights are never dropped)


@dataclass
class RetentionPlan:
    keep: dict[str, str] = field(default_factory=dict)  # id -> why (the first reason that applies)
    drop: list[str] = field(default_factory=list)  # ids whose weights go, oldest first
    over_budget_bytes: int = 0  # what the protected snapshots alone exceed the budget by

    def to_json(self) -> dict:
        return {"keep": self.keep, "drop": self.drop, "over_budget_bytes": self.over_budget_bytes}


def generations(versions: Iterable[VersionDisk]) -> dict[str, int]:
    """Depth of each version below the base (base 0, its children 1, ...)."""
    parents = {v.id: v.parent_id for v in versions}
    depth: dict[str, int] = {}

    def walk(vid: str) -> int:
        seen = []
        node: str | None = vid
        while node is not None and node not in depth and node in parents and node not in seen:
            seen.append(node)
            node = parents[node]
        d = depth.get(node, -1) if node is not None else -1
        for n in reversed(seen):
            d += 1
            depth[n] = d
        return depth[vid]

    for vid in parents:
        walk(vid)
    return depth


def plan(versions: Sequence[VersionDisk], policy: RetentionPolicy, now: datetime) -> RetentionPlan:
    """Which versions keep their weights, and why; the rest are dropped (pure)."""
    by_id = {v.id: v for v in versions}
    depth = generations(versions)
    reasons: dict[str, str] = {}

    def keep(vid: str | None, why: str) -> None:
        if vid is not None and vid in by_id and vid not in reasons:
            reasons[vid] = why

    keep("base", "base")
    for v in versions:
        if v.serving:
            keep(v.id, "serving")
    served = sorted((v for v in versions if v.served_at and not v.serving), key=lambda v: v.served_at)
    previous = [v for v in served if v.status == "promoted"]
    if previous:
        keep(previous[-1].id, "previous")
    for v in versions:
        if not v.replayable:
            keep(v.id, "no_seed_log")
    for v in versions:
        if v.status == "candidate":  # being judged: it and the parent its gate compares with
            keep(v.id, "candidate")
            keep(v.parent_id, "candidate")
    promoted = sorted(
        (v for v in versions if v.status == "promoted" and v.id != "base"),
        key=lambda v: (v.promoted_at or v.created_at, v.id),
    )
    for v in promoted[-policy.keep_promoted :] if policy.keep_promoted > 0 else []:
        keep(v.id, "last_promoted")
    if policy.checkpoint_every > 0:
        for v in promoted:
            if depth.get(v.id, 0) % policy.checkpoint_every == 0:
                keep(v.id, "checkpoint")
    grace = timedelta(seconds=policy.rejected_grace_s)
    for v in versions:
        if v.status == "rejected" and now - v.created_at < grace:
            keep(v.id, "grace")
    result = RetentionPlan()
    oldest_first = sorted(versions, key=lambda v: (v.created_at, v.id))
    result.drop = [v.id for v in oldest_first if v.id not in reasons and v.bytes > 0]
    if policy.budget_bytes is not None:
        total = sum(by_id[vid].bytes for vid in reasons)
        for v in oldest_first:  # droppable kinds, oldest first, until the rest fits
            if total <= policy.budget_bytes:
                break
            if v.id in reasons and reasons[v.id] not in PROTECTED and v.bytes > 0:
                total -= v.bytes
                del reasons[v.id]
                result.drop.append(v.id)
        result.over_budget_bytes = max(0, total - policy.budget_bytes)
    result.keep = {vid: reasons[vid] for vid in sorted(reasons, key=lambda i: (by_id[i].created_at, i))}
    return result


def weights_bytes(snapshot_dir: str | Path | None) -> int:
    """Bytes of the weights files in a snapshot directory (0 if none or gone)."""
    if not snapshot_dir:
        return 0
    return sum(f.stat().st_size for f in Path(snapshot_dir).glob(WEIGHT_GLOB) if f.is_file())


def drop_weights(snapshot_dir: str | Path) -> int:
    """Delete a snapshot's weights files (``meta.json`` and sidecars stay); returns bytes freed."""
    freed = 0
    for f in Path(snapshot_dir).glob(WEIGHT_GLOB):
        freed += f.stat().st_size
        f.unlink()
    return freed


def disk_free(path: str | Path) -> dict[str, int]:
    """Total, used and free bytes of the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    usage = shutil.disk_usage(p)
    return {"total_bytes": usage.total, "used_bytes": usage.used, "free_bytes": usage.free}


async def disk_rows(
    session: AsyncSession, can_replay: Callable[[dict], bool] = lambda meta: False
) -> list[tuple[ModelVersion, VersionDisk]]:
    """Every registry row with what its snapshot holds on disk now.

    ``can_replay(meta)`` says whether a row's seed log rebuilds it (``weights.lineage.can_replay``;
    passed in because this layer imports nothing of ours). The default keeps everything.
    """
    rows = list(
        await session.scalars(select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.id))
    )
    return [
        (
            v,
            VersionDisk(
                id=v.id,
                parent_id=v.parent_id,
                status=v.status,
                serving=bool(v.serving),
                created_at=v.created_at,
                promoted_at=v.promoted_at,
                served_at=v.served_at,
                bytes=weights_bytes(v.snapshot_path),
                replayable=v.id == "base" or can_replay(v.meta or {}),
            ),
        )
        for v in rows
    ]


async def enforce(
    session: AsyncSession,
    policy: RetentionPolicy,
    can_replay: Callable[[dict], bool],
    *,
    who: str = "system",
    now: datetime | None = None,
) -> dict:
    """Plan, drop the weights the plan drops, audit each drop; the caller commits.

    Returns the plan, ``freed_bytes`` and ``stored_bytes``: what the snapshots hold afterwards.
    """
    rows = await disk_rows(session, can_replay)
    decided = plan([d for _, d in rows], policy, now or utcnow())
    paths = {v.id: v.snapshot_path for v, _ in rows}
    freed = 0
    for vid in decided.drop:
        if vid == "base" or not paths.get(vid):
            continue
        got = drop_weights(paths[vid])
        freed += got
        await audit(
            session,
            who=who,
            action="drop_weights",
            target=vid,
            reason="retention policy",
            details={"bytes": got},
        )
    stored = sum(d.bytes for _, d in rows) - freed
    return {**decided.to_json(), "freed_bytes": freed, "stored_bytes": stored}


__all__ = [
    "disk_rows",
    "enforce",
    "RetentionPlan",
    "RetentionPolicy",
    "VersionDisk",
    "disk_free",
    "drop_weights",
    "generations",
    "plan",
    "weights_bytes",
]
