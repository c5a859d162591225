"""The held-out pool, and the gate's target scores on it.

A completion whose id :func:`learner.feedback_items.heldout_bucket` holds out is never trained
on, in any round, and its feedback stays in the pool: every round's target check scores the
candidate and the incumbent on all of it so far (the newest ``learner_heldout_max_items`` per
task), so the check gains power as feedback accumulates instead of judging 17-30 items of one
round. An item's score is ``weight * mean per-token log-probability`` (nats/token) of its reply
from one prompt-logprob pass, no decoding: the reference (weight 1), the correction (1), or the
rated reply (its reward, centred where the pool is mostly rated down: :func:`item_weights`). The
gate compares the two versions item by item (``learner.gate``: a paired interval of candidate - incumbent), where
the rated items' change against theta0 of the fitness reduces to the same difference. The
verifiable items' greedy replies are scored too, by their verifiers; :func:`resolve_scoring`
picks which of the two scores the check decides on (``auto``: greedy where the pool has enough
verifiable items).

    pool, summary = await read_pool(db, settings, upto_seq=page.next_after_id)
    incumbent = await score_pool(engine, pool, config)
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from learner.feedback_items import heldout_bucket, heldout_pool
from learner.fitness import ServingEngine, mean_logprob, score_verifiable
from learner.items import Item, ItemSet, rated_weights
from learner.settings import LearnerSettings
from store.db import Database
from store.queries import feedback_newest_first
from weights.config import ESConfig

log = logging.getLogger(__name__)

# The target check's unit per scoring it decides on (points: verifier scores in [0, 1]).
TARGET_UNITS = {"likelihood": "nats/token", "greedy": "points"}

# Bounds of the pool's scan, in units of learner_heldout_max_items: rows kept (room for 16 tasks
# at their cap) and rows read (a held-out share of 0.25 reaches that many held-out rows).
POOL_ROWS, POOL_SCAN = 16, 64


@dataclass
class TargetScores:
    """One version's scores on the pool: item id -> score (nats/token; failed items absent)."""

    items: dict[str, float] = field(default_factory=dict)
    greedy: dict[str, float] = field(default_factory=dict)  # verifiable item id -> verifier score (0..1)
    failed: int = 0
    verifier_failed: int = 0  # verifiable items whose verifier failed (greedy accuracy counts them 0)

    @property
    def mean(self) -> float | None:
        return sum(self.items.values()) / len(self.items) if self.items else None

    @property
    def accuracy(self) -> float | None:
        """Greedy verifier accuracy on the pool's verifiable items (a failed reply scores 0)."""
        return sum(self.greedy.values()) / len(self.greedy) if self.greedy else None

    @property
    def verifiable(self) -> int:
        return len(self.greedy)

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "items": len(self.items),
            "failed": self.failed,
            "accuracy": self.accuracy,
            "verifiable": self.verifiable,
            "verifier_failed": self.verifier_failed,
        }


async def read_pool(db: Database, s: LearnerSettings, *, upto_seq: int) -> tuple[ItemSet, dict[str, Any]]:
    """Every held-out feedback item up to the round's cursor, newest first, within the caps."""
    cap = s.learner_heldout_max_items
    async with db.sessions() as session:
        rows = await feedback_newest_first(
            session,
            upto_seq=upto_seq,
            keep=lambda fb: heldout_bucket(fb.completion_id, s.learner_heldout_fraction),
            limit=POOL_ROWS * cap,
            scan=POOL_SCAN * cap,
        )
    return heldout_pool(
        rows,
        max_per_task=cap,
        max_per_caller=s.learner_max_feedback_per_caller,
        max_chars=s.learner_item_max_chars,
    )


def item_weights(pool: ItemSet) -> dict[str, float]:
    """Item id -> the weight of its likelihood: a reference or a correction 1, a rated reply its
    reward, centred over the pool's rated replies where they are mostly rated down
    (:func:`learner.items.rated_weights`: a uniform likelihood drop must not read as a gain)."""
    weights = {item.id: 1.0 for item in pool.verifiable}
    weights.update(zip((i.id for i in pool.rated), rated_weights(pool.rated), strict=True))
    return weights


async def score_pool(engine: ServingEngine, pool: ItemSet, config: ESConfig) -> TargetScores:
    """Score whatever the engine serves on the pool (one retry per item; what fails twice is left out)."""
    sem = asyncio.Semaphore(config.concurrency)
    weights = item_weights(pool)

    async def one(item: Item) -> float | None:
        for attempt in range(2):
            try:
                async with sem:
                    return weights[item.id] * await mean_logprob(engine, item)
            except Exception as exc:  # noqa: BLE001 - an item that fails is left out, never fatal
                if attempt:
                    log.warning("held-out item %s failed: %s", item.id, exc)
        return None

    items = [*pool.verifiable, *pool.rated]
    greedy, values = await asyncio.gather(
        score_verifiable(
            engine, pool.verifiable, max_tokens=config.max_tokens, concurrency=config.concurrency
        ),
        asyncio.gather(*(one(item) for item in items)),
    )
    scores = {i.id: v for i, v in zip(items, values, strict=True) if v is not None and math.isfinite(v)}
    return TargetScores(
        items=scores,
        greedy={i.id: v for i, v in zip(pool.verifiable, greedy.scores, strict=True)},
        failed=len(items) - len(scores),
        verifier_failed=greedy.verifier_failed,
    )


def resolve_scoring(setting: str, candidate: TargetScores, incumbent: TargetScores, min_items: int) -> str:
    """The scoring the target check decides on: ``setting``, where ``auto`` is ``greedy`` when
    both versions' greedy replies were scored on at least ``min_items`` (and at least one) of the
    pool's verifiable items, else ``likelihood``.

    Why ``auto``: the round's default fitness is the verifier's score of greedy replies, which
    rewards the right answer in any words; the reference likelihood scores the exact reference
    text, and fell on a candidate that answered 12.5 points more of its pool correctly
    (docs/gate.md). Where a verifier exists, the check judges what the round optimised and what
    users see; a pool of rated replies only has no verifier, so its likelihood decides.

    >>> v = TargetScores(greedy={str(i): 1.0 for i in range(16)})
    >>> resolve_scoring("auto", v, v, 16), resolve_scoring("auto", v, TargetScores(), 16)
    ('greedy', 'likelihood')
    >>> resolve_scoring("likelihood", v, v, 16), resolve_scoring("greedy", TargetScores(), v, 16)
    ('likelihood', 'greedy')
    """
    if setting != "auto":
        return setting
    both, _ = paired(candidate, incumbent, "greedy")
    return "greedy" if len(both) >= max(min_items, 1) else "likelihood"


def paired(
    candidate: TargetScores, incumbent: TargetScores, scoring: str = "likelihood"
) -> tuple[dict[str, float], dict[str, float]]:
    """Both versions' scores on the items both scored (an item that failed for one is dropped).

    ``scoring``: ``likelihood`` (every item, nats/token) or ``greedy`` (the verifiable items'
    verifier scores of their greedy replies; a reply that failed scored 0 for its version).
    """
    cand, inc = (
        (candidate.greedy, incumbent.greedy) if scoring == "greedy" else (candidate.items, incumbent.items)
    )
    both = cand.keys() & inc.keys()
    return {k: cand[k] for k in both}, {k: inc[k] for k in both}
