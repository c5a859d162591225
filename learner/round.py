"""One learner round, top to bottom.

    feedback since the last round -> split train / held-out -> fitness items
    -> the held-out pool (all held-out feedback so far), scored for the incumbent
    -> ES + AWD for K iterations from the serving version, anchored to the base
    -> candidate snapshot + registry row -> gate (held-out pool, prior suites, KL to base)
    -> promote (hot swap in the serving engine, verified there) or reject, with reasons

Every step is recorded: the run row (status, phase, timings, metrics, decision), one row per
iteration, the gate decision. Nothing here touches the serving engine except ``ctx.promote``,
which is called only after the gate passed: a crash anywhere leaves the served version as it
was, and the runner (``learner/service.py``) marks the run failed.

Run by the learner service; by hand: ``POST /admin/learner/rounds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.suites import Probe, Suite, split_looks, trim
from learner.engines import ESEngine
from learner.es_loop import IterationRecord, run_es
from learner.feedback_items import build_round_items
from learner.gate import (
    Decision,
    Scores,
    Thresholds,
    at_look,
    look_confidence,
    mean_scores,
    reject_without_suites,
)
from learner.gate_eval import cached_suite_scores, kl_to_base, load_dir
from learner.heldout import TARGET_UNITS, paired, read_pool, resolve_scoring, score_pool
from learner.settings import LearnerSettings
from store.db import Database
from store.queries import feedback_since
from store.retention import disk_free, enforce, weights_bytes
from store.rounds import add_iteration, feedback_cursor, update_round
from store.versions import (
    BASE,
    add_candidate,
    get_version,
    next_version_id,
    record_decision,
    serving_version,
    set_status,
)
from weights.config import ESConfig
from weights.lineage import can_replay
from weights.meta import SnapshotMeta

log = logging.getLogger(__name__)

Promote = Callable[[str, str], Awaitable[dict]]  # (version id, reason) -> swap report


class RoundError(RuntimeError):
    """The round cannot go on (no room on disk, no serving version...)."""


@dataclass
class RoundContext:
    """What a round needs; built once by the learner service."""

    db: Database
    engine: ESEngine  # one learner engine, or K on Ray
    settings: LearnerSettings
    base_dir: Path
    suites: Callable[[], Awaitable[list[Suite]]]
    probes: Sequence[Probe]
    promote: Promote
    before_member: Callable[[], Awaitable[object]] | None = None  # e.g. learner.yielding.ChatYield


@dataclass
class RoundOutcome:
    decision: str  # promoted | rejected | skipped (no usable feedback: nothing ran, nothing written)
    candidate: str | None
    gate: dict[str, Any] = field(default_factory=dict)


def banner(round_id: int, text: str) -> None:
    log.info("round %d: ---- %s", round_id, text)


async def run_round(ctx: RoundContext, round_id: int, overrides: dict[str, Any]) -> RoundOutcome:
    s, db, engine = ctx.settings, ctx.db, ctx.engine
    phases: dict[str, float] = {}
    kept: dict[str, Any] = {}  # in the round's metrics from here on, whatever the phase

    async def phase(name: str, **extra: Any) -> None:
        banner(round_id, name)
        phases[name] = time.time()
        metrics = {"phase": name, "phases": phases, **kept, **extra}
        async with db.sessions() as session:
            await update_round(session, round_id=round_id, metrics=metrics)
            await session.commit()

    # ---- 1. feedback since the last round ----------------------------------------------------
    await phase("feedback")
    async with db.sessions() as session:
        cursor = await feedback_cursor(session)
        page = await feedback_since(session, after_id=cursor, limit=s.learner_max_feedback)
        incumbent = await serving_version(session) or await get_version(session, version_id=BASE)
        await update_round(
            session,
            round_id=round_id,
            feedback_from_seq=cursor,
            feedback_to_seq=page.next_after_id,
            parent_version=incumbent.id,
            base_version=BASE,
        )
        await session.commit()

    # ---- 2. split train / held-out, build fitness items (what cannot be used is counted) -----
    items = build_round_items(
        page.items, s.learner_heldout_fraction, s.learner_max_feedback_per_caller, s.learner_item_max_chars
    )
    items.read += page.disabled
    items.skip("disabled", page.disabled)
    kept["feedback"] = items.summary()
    log.info("round %d: %d feedback -> %s", round_id, items.read, kept["feedback"])
    if not len(items.train):  # succeeded and skipped: the cursor moves past what nothing can use
        await phase("skipped")
        return RoundOutcome("skipped", None)
    config = s.es_config(round_id, overrides.get("es"))
    await phase("es", items=items.summary(), config=config.to_dict())

    # ---- 3. ES + AWD from the serving version, anchored to the base ---------------------------
    pool, pool_summary = await read_pool(db, s, upto_seq=page.next_after_id)
    log.info("round %d: held-out pool %s", round_id, pool_summary)
    await engine.init_state(Path(incumbent.snapshot_path), ctx.base_dir, config.noise)
    incumbent_scores = await score_pool(engine, pool, config)
    result = await run_es(
        engine,
        items.train,
        config,
        on_iteration=iteration_recorder(db, round_id),
        before_member=ctx.before_member,
    )
    kept["scoring"] = {  # items scored 0 over the run; of them, those whose verifier failed
        "failed_items": sum(r.failed_items for r in result.records),
        "verifier_failed": sum(r.verifier_failed for r in result.records),
    }
    candidate_scores = await score_pool(engine, pool, config)
    thresholds = s.thresholds(overrides.get("gate"))
    scoring = resolve_scoring(
        s.learner_target_scoring, candidate_scores, incumbent_scores, thresholds.min_target_items
    )
    candidate_target, incumbent_target = paired(candidate_scores, incumbent_scores, scoring)
    unit = TARGET_UNITS[scoring]
    target = {
        "unit": unit,
        "pool": pool_summary,
        "candidate": candidate_scores.to_json(),
        "incumbent": incumbent_scores.to_json(),
    }

    # ---- 4. candidate snapshot ---------------------------------------------------------------
    await phase("snapshot")
    async with db.sessions() as session:
        version_id = await next_version_id(session)
    path = s.versions_dir / version_id
    await ensure_disk(db, s, weights_bytes(incumbent.snapshot_path))  # a candidate: its parent's size
    drift = await engine.drift()
    meta = await engine.snapshot(
        path, snapshot_meta(round_id, incumbent.id, config, result.records, drift["drift"])
    )
    metrics = {
        "target": candidate_scores.mean,
        "incumbent_target": incumbent_scores.mean,
        "target_accuracy": candidate_scores.accuracy,
        "drift": drift["drift"],
        "unchanged": drift["unchanged"],
    }
    async with db.sessions() as session:
        await add_candidate(
            session,
            version_id=version_id,
            parent_id=incumbent.id,
            snapshot_path=str(path),
            sha256=meta.sha256,
            meta=meta.model_dump(mode="json"),
            metrics=metrics,
        )
        await update_round(session, round_id=round_id, candidate_version=version_id)
        await session.commit()

    # ---- 5. gate: held-out target, prior suites, KL(candidate || base) -----------------------
    await phase("gate", candidate=version_id)
    early = (
        reject_without_suites(candidate_target, incumbent_target, thresholds, unit=unit)
        if s.gate_early_reject
        else None
    )
    if early is not None:
        log.info("round %d: %s; suites and KL skipped", round_id, early.reasons[0])
        decision = early
        measured: dict[str, Any] = {
            "scores": {
                "candidate": {"target": candidate_scores.mean},
                "incumbent": {"id": incumbent.id, "target": incumbent_scores.mean},
            }
        }
    else:
        decision, measured = await suites_gate(
            ctx, config, incumbent, version_id, thresholds, candidate_target, incumbent_target, unit
        )
    gate = {
        **decision.to_json(),
        "thresholds": thresholds.to_json(),
        "target_kind": scoring,
        "target": target,
        **measured,
    }
    async with db.sessions() as session:
        await record_decision(
            session,
            version_id=version_id,
            promote=decision.promote,
            reasons=decision.reasons,
            checks=gate,
            round_id=round_id,
        )
        await session.commit()

    # ---- 6. promote (hot swap, verified by the gateway) or reject ------------------------------
    await phase("promote" if decision.promote else "reject", candidate=version_id, gate=gate)
    if decision.promote:
        reason = f"round {round_id}: " + "; ".join(decision.reasons)
        swap = await ctx.promote(version_id, reason)
        gate["swap"] = swap.get("swap", swap)
    else:
        async with db.sessions() as session:
            await set_status(session, version_id=version_id, status="rejected")
            await enforce(session, s.retention_policy(), can_replay)  # a promotion runs it in the gateway
            await session.commit()
    return RoundOutcome("promoted" if decision.promote else "rejected", version_id, gate)


async def suites_gate(
    ctx: RoundContext,
    config: ESConfig,
    incumbent: Any,
    version_id: str,
    thresholds: Thresholds,
    candidate_target: dict[str, float],
    incumbent_target: dict[str, float],
    unit: str = "nats/token",
) -> tuple[Decision, dict[str, Any]]:
    """The gate's suites and KL, in ``gate_looks`` looks.

    Look ``j`` scores the ``j``-th slice of every suite (``evals.suites.split_looks``) for the
    candidate, and for the base and the incumbent where the cache lacks it (the learner scores
    them at boot), then judges every item scored so far. An interim look stops when that settles
    it (``learner.gate.interim``: a clear pass, or a suite clearly below its margin); the last
    look decides. KL(candidate || base) is measured once, at the first look.

    Returns the decision and what was measured for the round's record (KL, suite means, looks).
    """
    s, db, engine = ctx.settings, ctx.db, ctx.engine
    looks = split_looks(trim(await ctx.suites(), s.gate_suite_max_items), s.gate_looks)
    cand: dict[str, dict[str, float]] = {}
    base: dict[str, dict[str, float]] = {}
    inc = base if incumbent.id == BASE else {}
    kl = None
    decision: Decision | None = None
    look = 0
    for look, part in enumerate(looks, start=1):
        if look > 1:  # the KL and the references' scoring left other weights loaded
            await engine.load_master()
        _merge(cand, await cached_suite_scores(db, engine, part, version_id))
        if kl is None:
            kl = await kl_to_base(
                engine, ctx.probes, k=s.gate_kl_samples, max_tokens=s.gate_kl_max_tokens, seed=config.seed
            )  # leaves the base loaded
        _merge(base, await cached_suite_scores(db, engine, part, BASE, load=engine.load_base))
        if incumbent.id != BASE:
            load = load_dir(engine, Path(incumbent.snapshot_path))
            _merge(inc, await cached_suite_scores(db, engine, part, incumbent.id, load=load))
        scores = (
            Scores(candidate_target, cand, kl.kl, target_unit=unit),
            Scores(incumbent_target, inc, None, target_unit=unit),
            Scores(None, base, 0.0),
        )
        decision = at_look(*scores, thresholds, look=look, looks=len(looks))
        if decision is not None:
            break
    assert decision is not None and kl is not None  # the last look always decides
    items = {name: len(got) for name, got in cand.items()}
    log.info(
        "gate of %s decided at look %d of %d (%d of %d suite items)",
        version_id,
        look,
        len(looks),
        sum(items.values()),
        sum(len(suite.items) for part in looks for suite in part),
    )
    measured = {
        "kl": kl.to_json(),
        "scores": {  # suite means; the per-item scores stay in the suite score cache
            "candidate": {"target": _mean(candidate_target), "suites": mean_scores(cand)},
            "incumbent": {"id": incumbent.id, "target": _mean(incumbent_target), "suites": mean_scores(inc)},
            "base": {"suites": mean_scores(base)},
        },
        "looks": {
            "looks": len(looks),
            "decided_at": look,
            "confidence": look_confidence(thresholds.confidence, len(looks)),
            "items": items,
        },
    }
    return decision, measured


def _mean(items: dict[str, float]) -> float | None:
    return sum(items.values()) / len(items) if items else None


def _merge(into: dict[str, dict[str, float]], scores: dict[str, dict[str, float]]) -> None:
    for name, items in scores.items():
        into.setdefault(name, {}).update(items)


async def room_for_candidate(db: Database, s: LearnerSettings) -> None:
    """Before a round starts its engine: is there room for a snapshot of the serving version's size?"""
    async with db.sessions() as session:
        incumbent = await serving_version(session) or await get_version(session, version_id=BASE)
        path = incumbent.snapshot_path if incumbent else None
    await ensure_disk(db, s, weights_bytes(path))


async def ensure_disk(db: Database, s: LearnerSettings, need: int) -> None:
    """Room for a snapshot of ``need`` bytes, or a RoundError (stored as the run's error).

    First the retention policy drops what it may; then the write must leave
    ``min_free_disk_gb`` free and keep the snapshots within ``disk_budget_gb``.
    """
    policy = s.retention_policy()
    async with db.sessions() as session:
        stored = (await enforce(session, policy, can_replay))["stored_bytes"]
        await session.commit()
    free = disk_free(s.versions_dir)["free_bytes"]
    min_free = int(s.min_free_disk_gb * 1e9)
    if free - need < min_free:
        raise RoundError(
            f"disk: a {need / 1e9:.2f} GB snapshot would leave {(free - need) / 1e9:.2f} GB free in "
            f"{s.versions_dir}, below min_free_disk_gb {s.min_free_disk_gb:g}; nothing was written"
        )
    if policy.budget_bytes is not None and stored + need > policy.budget_bytes:
        raise RoundError(
            f"disk: snapshots would hold {(stored + need) / 1e9:.2f} GB, over disk_budget_gb "
            f"{s.disk_budget_gb:g} (what is left is protected: base, serving, previous, candidates)"
        )


def actors_summary(workers: dict[str, dict[str, Any]] | None) -> str:
    """`` | actors: actor-0 3, actor-1 2 (died: ...)`` for a learner on Ray; empty for one engine.

    >>> actors_summary({"actor-0": {"members": 3, "failures": []}, "actor-1": {"members": 1, "failures": ["boom"]}})
    ' | actors: actor-0 3, actor-1 1 (failed: boom)'
    """
    if not workers:
        return ""
    parts = []
    for name, w in workers.items():
        failed = f" (failed: {'; '.join(w['failures'])})" if w.get("failures") else ""
        parts.append(f"{name} {w['members']}{failed}")
    return " | actors: " + ", ".join(parts)


def iteration_recorder(db: Database, round_id: int):
    async def record(it: IterationRecord) -> None:
        log.info(
            "round %d: iteration %d fitness %.3f drift %.3f (%.1f s)%s",
            round_id,
            it.iteration,
            it.fitness_mean,
            it.drift,
            it.wall_s,
            actors_summary(it.workers),
        )
        async with db.sessions() as session:
            await add_iteration(session, round_id=round_id, iteration=it.iteration, metrics=it.to_json())
            await session.commit()

    return record


def snapshot_meta(
    round_id: int, parent: str, config: ESConfig, records: list[IterationRecord], drift: float
) -> SnapshotMeta:
    return SnapshotMeta(
        parent=parent,
        base=BASE,
        round_id=round_id,
        config=config.to_dict(),
        seeds=[r.seeds for r in records],
        coefficients=[r.coefficients for r in records],
        noise=config.noise,
        drift=drift,
        metrics={"iterations": [r.to_json() for r in records]},
    )


__all__ = ["Decision", "RoundContext", "RoundError", "RoundOutcome", "room_for_candidate", "run_round"]
