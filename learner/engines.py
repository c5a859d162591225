"""The learner's engine seam: what a round and the ES loop drive, and its one-engine implementation.

``ESEngine`` is the one type behind ``run_es``, ``run_round`` and the gate: weight operations
(seeds and coefficients in, scalars out), population evaluation (every member of an iteration
scored on its minibatch), and an OpenAI ``client`` for the driver's own scoring (held-out
target, gate suites, KL). Two classes implement it:

* :class:`LocalLearnerEngine`: one learner engine (``engine.learner_engine.LearnerEngine``)
  that loads and scores the members one after another;
* ``learner.distributed.RayLearnerEngine``: K such engines as Ray actors, scoring members side
  by side (each actor owns a :class:`LocalLearnerEngine`).

Both give the same members in the same order, so the update is the same bit for bit::

    engine = await LocalLearnerEngine.start(model_dir, log_file=log)
    result = await run_es(engine, items, config)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from engine.learner_engine import LearnerEngine
from engine.supervisor import EngineSupervisor
from learner.fitness import FitnessEvaluator, MemberFitness
from learner.items import ItemSet
from weights.meta import NoiseSpec, SnapshotMeta

BeforeMember = Callable[[], Awaitable[object]]  # e.g. learner.yielding.ChatYield


@runtime_checkable
class ESEngine(Protocol):
    """A learner engine handle as the ES loop, the round and the gate use it.

    Every weight operation leaves whatever serves ``client`` on the same weights (on Ray: every
    live actor). ``evaluate_population`` is the one place the members are loaded.
    """

    client: Any  # chat, completions, tokenize, post (``engine.client.EngineClient`` or the same methods)
    served_name: str
    init_info: dict  # the worker's ``es_init`` report (``load_mode``, ...)
    supervisor: EngineSupervisor | None  # one local engine's process (the admin status shows it); None on Ray

    @property
    def degraded(self) -> bool:
        """An engine was lost (its process, or an actor): start a full set before the next round."""
        ...

    @property
    def pausable(self) -> bool:
        """Whether ``learner.yielding.ChatGuard`` may pause ``client`` while chats are served."""
        ...

    async def init_state(self, master_dir: Path, base_dir: Path, noise: NoiseSpec = NoiseSpec()) -> dict:
        """(Re)load theta from ``master_dir`` and theta0 from ``base_dir``; serve the master."""
        ...

    async def load_master(self) -> dict: ...

    async def load_base(self) -> dict: ...

    async def load_weights_from(self, model_dir: Path) -> dict:
        """Serve a model directory (the master is untouched; ``load_master`` serves it again)."""
        ...

    async def apply_update(
        self,
        seeds: list[int],
        coefficients: list[float],
        *,
        alpha: float,
        population: int,
        awd_lambda: float = 0.0,
        awd_kind: str = "l2",
    ) -> dict:
        """One ES step plus AWD on the master; ``update_norm``, ``drift``, ... (not yet served)."""
        ...

    async def snapshot(self, out_dir: Path, meta: SnapshotMeta) -> SnapshotMeta: ...

    async def checksum(self) -> dict: ...

    async def drift(self) -> dict: ...

    async def prepare(
        self,
        items: ItemSet,
        *,
        minibatch: int,
        max_tokens: int,
        seed: int = 0,
        concurrency: int = 32,
        weights: dict[str, float] | None = None,
    ) -> None:
        """Build the round's fitness over ``items`` (rated items: their likelihood under theta0);
        ``weights``: ``ESConfig.fitness_weights`` (components of weight 0 are not computed)."""
        ...

    async def evaluate_population(
        self,
        iteration: int,
        seeds: Sequence[int],
        sigma: float,
        timings: dict[str, float],
        before_member: BeforeMember | None = None,
    ) -> list[MemberFitness]:
        """Fitness of ``+eps`` then ``-eps`` of every seed, in that order, on the iteration's minibatch.

        Adds the seconds spent to ``timings`` (``load_s``, ``evaluate_s``, ``yield_s``: waiting
        in ``before_member``, awaited before each member is loaded). Leaves a member loaded.
        """
        ...

    def work_report(self) -> dict[str, dict[str, Any]] | None:
        """Per engine, the last population's work (the iteration record's ``workers``); None for one engine."""
        ...

    async def close(self) -> None: ...


class LocalLearnerEngine(LearnerEngine):
    """One learner engine that evaluates a population itself, one member after another."""

    evaluator: FitnessEvaluator | None = None  # the round's, from ``prepare``

    @property
    def degraded(self) -> bool:
        return self.supervisor is not None and self.supervisor.pid is None

    @property
    def pausable(self) -> bool:
        return True

    async def prepare(
        self,
        items: ItemSet,
        *,
        minibatch: int,
        max_tokens: int,
        seed: int = 0,
        concurrency: int = 32,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.evaluator = FitnessEvaluator(
            self,
            items,
            minibatch=minibatch,
            max_tokens=max_tokens,
            seed=seed,
            concurrency=concurrency,
            weights=weights,
        )
        await self.evaluator.prepare(self.load_base, self.load_master)

    async def evaluate_member(
        self, iteration: int, seed: int, sigma: float, sign: int
    ) -> tuple[MemberFitness, float, float]:
        """Load member ``(seed, sign)`` and score it on the iteration's minibatch; (fitness, load s, evaluate s)."""
        if self.evaluator is None:
            raise RuntimeError("prepare was not called")
        batch = self.evaluator.batch(iteration)
        started = time.perf_counter()
        await self.load_member(seed, sigma, sign)
        loaded = time.perf_counter()
        fitness = await self.evaluator.evaluate(batch)
        return fitness, loaded - started, time.perf_counter() - loaded

    async def evaluate_population(
        self,
        iteration: int,
        seeds: Sequence[int],
        sigma: float,
        timings: dict[str, float],
        before_member: BeforeMember | None = None,
    ) -> list[MemberFitness]:
        members: list[MemberFitness] = []
        for seed in seeds:
            for sign in (1, -1):
                if before_member is not None:  # e.g. yield the CPU to chats in flight
                    waited = time.perf_counter()
                    await before_member()
                    timings["yield_s"] += time.perf_counter() - waited
                fitness, load_s, evaluate_s = await self.evaluate_member(iteration, seed, sigma, sign)
                members.append(fitness)
                timings["load_s"] += load_s
                timings["evaluate_s"] += evaluate_s
        return members

    def work_report(self) -> None:
        return None
