"""The ES + AWD loop over a learner engine: members -> fitness -> update, K times.

``run_es`` is the library entry point a round runner calls with its own engine handle (whose
master may be a parent snapshot and whose theta0 the deployed base)::

    result = await run_es(engine, items, config, on_iteration=print)

Each iteration draws ``population / 2`` seeds from ``(config.seed, iteration)``, loads and
scores ``+eps`` and ``-eps`` of each on the same minibatch, z-scores the fitness, and sends
``(seeds, coefficients)`` to the engine, which applies the step and AWD to its fp32 master.
The records (seeds, coefficients per iteration) are the audit trail: ``replay`` re-applies
them to the parent and reproduces the weights bit for bit (used to resume a run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from learner.engines import BeforeMember, ESEngine
from learner.fitness import COMPONENTS, MemberFitness, ServingEngine, combine, score_verifiable
from learner.items import ItemSet, VerifiableItem
from weights.config import ESConfig
from weights.es import iteration_seeds, pair_coefficients


@dataclass
class IterationRecord:
    """Everything one iteration did (one line of the metrics JSONL)."""

    iteration: int
    seeds: list[int]
    coefficients: list[float]
    fitness_mean: float  # raw components averaged over the population
    fitness_max: float
    components: dict[str, float | None]
    failed_items: int
    update_norm: float
    update_sparsity: float
    drift: float
    drift_sparsity: float
    target_score: float | None
    timings: dict[str, float]
    wall_s: float
    verifier_failed: int = 0  # of failed_items: replies scored 0 because their verifier failed
    # learner on Ray: per actor, its node, members evaluated, seconds and failures
    workers: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ESResult:
    records: list[IterationRecord] = field(default_factory=list)
    initial_target: float | None = None

    @property
    def seeds(self) -> list[list[int]]:
        return [r.seeds for r in self.records]

    @property
    def coefficients(self) -> list[list[float]]:
        return [r.coefficients for r in self.records]


def _raw_fitness(member: MemberFitness) -> float:
    # For reporting only: the mean of the present raw components (the update uses z-scores).
    values = [v for name in COMPONENTS if (v := getattr(member, name)) is not None]
    return sum(values) / len(values) if values else 0.0


def _component_means(members: list[MemberFitness]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in COMPONENTS:
        values = [getattr(m, name) for m in members]
        out[name] = statistics.fmean(values) if all(v is not None for v in values) else None
    return out


async def target_score(engine: ServingEngine, items: Sequence[VerifiableItem], config: ESConfig) -> float:
    """Mean verifier score of the served model on held-out items (failures score 0)."""
    scores, *_ = await score_verifiable(
        engine, list(items), max_tokens=config.max_tokens, concurrency=config.concurrency
    )
    return sum(scores) / len(scores) if scores else 0.0


async def run_es(
    engine: ESEngine,
    items: ItemSet,
    config: ESConfig,
    *,
    heldout: Sequence[VerifiableItem] = (),
    eval_every: int = 0,
    start_iteration: int = 0,
    on_iteration: Callable[[IterationRecord], Awaitable[None] | None] | None = None,
    before_member: BeforeMember | None = None,
) -> ESResult:
    """Run ES + AWD for ``config.iterations`` iterations on the engine's master.

    Args:
        engine: one learner engine (``learner.engines.LocalLearnerEngine``) or K on Ray
            (``learner.distributed.RayLearnerEngine``, members side by side); the arithmetic
            is the same.
        items: training items (verifiable and/or rated).
        config: hyper-parameters.
        heldout: verifiable items for the target score (not trained on).
        eval_every: score ``heldout`` every this many iterations and after the last (0: never).
        start_iteration: first iteration index (after ``replay`` of earlier records).
        on_iteration: called with each record (sync or async), e.g. to write JSONL.
        before_member: awaited before each member is loaded (the learner service yields the
            CPU to chats in flight there); it never changes what is computed.

    Returns:
        The records; the engine is left serving the updated master.
    """
    await engine.prepare(
        items,
        minibatch=config.minibatch,
        max_tokens=config.max_tokens,
        seed=config.seed,
        concurrency=config.concurrency,
        weights=config.fitness_weights,
    )
    result = ESResult()
    if heldout and eval_every:
        result.initial_target = await target_score(engine, heldout, config)
    for iteration in range(start_iteration, config.iterations):
        started = time.perf_counter()
        timings = {"load_s": 0.0, "evaluate_s": 0.0, "update_s": 0.0, "target_s": 0.0, "yield_s": 0.0}
        seeds = iteration_seeds(config.seed, iteration, config.pairs)
        members = await engine.evaluate_population(iteration, seeds, config.sigma, timings, before_member)
        coefficients = pair_coefficients(combine(members, config.fitness_weights))
        t0 = time.perf_counter()
        stats = await engine.apply_update(
            seeds,
            coefficients,
            alpha=config.alpha,
            population=config.population,
            awd_lambda=config.awd_lambda,
            awd_kind=config.awd_kind,
        )
        await engine.load_master()
        timings["update_s"] = time.perf_counter() - t0
        target = None
        last = iteration == config.iterations - 1
        if heldout and eval_every and ((iteration + 1) % eval_every == 0 or last):
            t0 = time.perf_counter()
            target = await target_score(engine, heldout, config)
            timings["target_s"] = time.perf_counter() - t0
        raw = [_raw_fitness(m) for m in members]
        record = IterationRecord(
            iteration=iteration,
            seeds=seeds,
            coefficients=coefficients,
            fitness_mean=statistics.fmean(raw),
            fitness_max=max(raw),
            components=_component_means(members),
            failed_items=sum(m.failed for m in members),
            update_norm=stats["update_norm"],
            update_sparsity=stats["update_sparsity"],
            drift=stats["drift"],
            drift_sparsity=stats["drift_sparsity"],
            target_score=target,
            timings={k: round(v, 3) for k, v in timings.items()},
            wall_s=round(time.perf_counter() - started, 3),
            verifier_failed=sum(m.verifier_failed for m in members),
            workers=engine.work_report(),
        )
        result.records.append(record)
        if on_iteration is not None and (pending := on_iteration(record)) is not None:
            await pending
    return result


async def replay(engine: ESEngine, records: Sequence[dict[str, Any]], config: ESConfig) -> int:
    """Re-apply recorded updates (seeds, coefficients) to the engine's master, in order.

    The step is deterministic fp32 arithmetic on the same noise, so the master ends bit for
    bit where the recorded run was after those iterations. Returns the next iteration index.
    """
    for record in records:
        await engine.apply_update(
            record["seeds"],
            record["coefficients"],
            alpha=config.alpha,
            population=config.population,
            awd_lambda=config.awd_lambda,
            awd_kind=config.awd_kind,
        )
    await engine.load_master()
    return len(records)
