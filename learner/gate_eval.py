"""Measure what the gate needs, on the learner engine: per-item suite scores (cached) and KL.

Suite scores are cached in the store per (suite, suite version, content sha256, model
version), with every item's score (the gate compares versions item by item): the base is
scored once, an incumbent once, and a candidate once. Loading other weights to score them
goes through the learner engine's handle, never the serving engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from evals.scoring import score_suites
from evals.suites import Probe, Suite
from learner.engines import ESEngine
from learner.fitness import ServingEngine
from learner.kl import KLEstimate, measure_kl
from store.db import Database
from store.suites import cached_items, store_score

log = logging.getLogger(__name__)


async def cached_suite_scores(
    db: Database,
    engine: ServingEngine,
    suites: Sequence[Suite],
    model_version: str,
    load: Callable[[], Awaitable[Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """Item scores of ``model_version`` on ``suites``: from the cache, or measured and cached.

    Args:
        db: the store (suite_scores cache).
        engine: what serves ``model_version`` (or will, after ``load``): ``client``, ``served_name``.
        suites: the suites to score.
        model_version: whose scores (``base``, ``v3``, ...).
        load: awaited before measuring if anything is missing (loads those weights); None when
            the engine already serves ``model_version``.

    Returns:
        ``{suite name: {item id: score}}``.
    """
    scores: dict[str, dict[str, float]] = {}
    missing: list[Suite] = []
    async with db.sessions() as session:
        for suite in suites:
            items = await cached_items(
                session,
                suite=suite.name,
                suite_version=str(suite.version),
                sha256=suite.sha256,
                model_version=model_version,
            )
            if items is None:  # not scored yet, or cached before item scores were kept
                missing.append(suite)
            else:
                scores[suite.name] = items
    if not missing:
        return scores
    if load is not None:
        await load()
    started = time.perf_counter()
    measured = await score_suites(engine.client, engine.served_name, missing)
    log.info("scored %s on %d suites in %.1f s", model_version, len(missing), time.perf_counter() - started)
    async with db.sessions() as session:
        for suite in missing:
            result = measured[suite.name]
            scores[suite.name] = result.items
            if result.failed:  # an engine hiccup is not a score worth keeping
                log.warning("%s on %s: %d items failed; not cached", model_version, suite.name, result.failed)
                continue
            await store_score(
                session,
                suite=suite.name,
                suite_version=str(suite.version),
                sha256=suite.sha256,
                model_version=model_version,
                items=result.items,
                details={"failed": result.failed, "wall_s": result.wall_s, "accuracy": result.accuracy},
            )
        await session.commit()
    return scores


async def kl_to_base(
    engine: ESEngine, probes: Sequence[Probe], *, k: int, max_tokens: int, seed: int
) -> KLEstimate:
    """KL(served || base): sample from what the engine serves now, then load theta0 and score.

    Leaves the engine serving the base.
    """
    return await measure_kl(
        engine.client,
        engine.served_name,
        list(probes),
        load_reference=engine.load_base,
        k=k,
        max_tokens=max_tokens,
        seed=seed,
    )


def load_dir(engine: ESEngine, path: Path) -> Callable[[], Awaitable[Any]]:
    async def _load() -> Any:
        return await engine.load_weights_from(path)

    return _load
