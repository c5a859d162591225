"""Rated replies mostly rated down: a uniform likelihood drop (what any weight change does to a
model's own near-mode replies) must score as no gain, in the gate's target check and in the
fitness; only making the up-rated replies likelier than the down-rated ones counts.

The engine is a fake (``FakeLogprobs``): each reply's mean log-probability is a number the test
sets, so the arithmetic of the weights is what is checked, not a model."""

from __future__ import annotations

import doctest
from types import SimpleNamespace as NS

import pytest

from evals.thresholds import Thresholds
from learner import items as items_module
from learner.fitness import Batch, FitnessEvaluator
from learner.gate import reject_without_suites
from learner.heldout import item_weights, score_pool
from learner.items import ItemSet, RatedItem, parse_item
from weights.config import ESConfig

UP, DOWN = "Paris.", "The capital of France is, as many people know, the city of Paris."


def rated(n_down: int, n_up: int = 1) -> ItemSet:
    rows = [("up", UP, 1.0)] * n_up + [("down", DOWN, -1.0)] * n_down
    return ItemSet(
        rated=[
            parse_item(
                {"id": f"{kind}-{k}", "prompt": f"Capital of France? ({k})", "completion": c, "reward": r}, k
            )
            for k, (kind, c, r) in enumerate(rows)
        ]
    )


class FakeLogprobs:
    """A fake engine's mean per-token log-probability of each reply: -1 everywhere, less ``drop``,
    plus ``up_gain`` on up-rated replies."""

    def __init__(self, drop: float = 0.0, up_gain: float = 0.0):
        self.drop, self.up_gain = drop, up_gain

    def of(self, item: RatedItem) -> float:
        return -1.0 - self.drop + (self.up_gain if item.reward > 0 else 0.0)


def test_the_weights_doctests():
    result = doctest.testmod(items_module)
    assert result.attempted > 0 and result.failed == 0


def test_mostly_down_weights_sum_to_zero_and_keep_their_order():
    pool = rated(n_down=7)
    weights = item_weights(pool)
    assert sum(weights.values()) == pytest.approx(0.0)
    ups = [w for k, w in weights.items() if k.startswith("up")]
    downs = [w for k, w in weights.items() if k.startswith("down")]
    assert min(ups) > 0 > max(downs)


async def pool_scores(monkeypatch, pool: ItemSet, fake: FakeLogprobs) -> dict[str, float]:
    async def mean_logprob(engine, item):
        return fake.of(item)

    monkeypatch.setattr("learner.heldout.mean_logprob", mean_logprob)
    engine = NS(client=None, served_name="fake")
    return (await score_pool(engine, pool, ESConfig.preset("cpu"))).items


async def test_a_uniform_drop_on_a_mostly_down_pool_is_no_gain_to_the_target_check(monkeypatch):
    pool = rated(n_down=15)
    incumbent = await pool_scores(monkeypatch, pool, FakeLogprobs())
    drifted = await pool_scores(monkeypatch, pool, FakeLogprobs(drop=0.3))
    t = Thresholds()
    decision = reject_without_suites(drifted, incumbent, t)
    assert decision is not None and not decision.promote, "drift alone was promoted"
    assert decision.checks[0].interval.mean == pytest.approx(0.0, abs=1e-12)
    learned = await pool_scores(monkeypatch, pool, FakeLogprobs(drop=0.3, up_gain=0.5))
    assert reject_without_suites(learned, incumbent, t) is None  # up likelier than the downs: a gain


async def test_a_mostly_up_pool_keeps_its_raw_rewards(monkeypatch):
    pool = rated(n_down=1, n_up=3)
    assert item_weights(pool) == {i.id: i.reward for i in pool.rated}
    incumbent = await pool_scores(monkeypatch, pool, FakeLogprobs())
    drifted = await pool_scores(monkeypatch, pool, FakeLogprobs(drop=0.3))
    assert reject_without_suites(drifted, incumbent, Thresholds()) is not None  # a loss, as before


async def test_the_fitness_likelihood_component_gives_drift_alone_no_credit(monkeypatch):
    pool = rated(n_down=5)
    fake = FakeLogprobs()

    async def reply_logprobs(client, model, tokens):
        return [fake.of(tokens)]  # the fake's "tokens" are the item itself

    monkeypatch.setattr("learner.fitness.reply_logprobs", reply_logprobs)
    evaluator = FitnessEvaluator(
        NS(client=None, served_name="fake"), pool, minibatch=8, max_tokens=4, weights={"likelihood": 1.0}
    )
    evaluator._tokens = {i.id: i for i in pool.rated}
    evaluator._baseline = {i.id: fake.of(i) for i in pool.rated}
    batch = Batch(rated=list(pool.rated))
    fake.drop = 0.3
    drifted = await evaluator.evaluate(batch)
    assert drifted.likelihood == pytest.approx(0.0, abs=1e-12)
    fake.up_gain = 0.5
    learned = await evaluator.evaluate(batch)
    assert learned.likelihood > 0.05
