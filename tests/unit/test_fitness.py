"""Fitness combination, minibatches, and item failures scoring 0 (with a scripted client)."""

from __future__ import annotations

import pytest

from learner.fitness import FitnessEvaluator, MemberFitness, combine
from learner.items import ItemSet, parse_item


def test_combine_zscores_each_component_then_weights():
    members = [
        MemberFitness(0.5, 0.001, 0, 2),
        MemberFitness(0.5, -0.001, 0, 2),
        MemberFitness(1.0, 0.0, 0, 2),
        MemberFitness(0.0, 0.0, 0, 2),
    ]
    total = combine(members, {"verifiable": 1.0, "likelihood": 2.0})
    # verifiable z: [0, 0, 1.414, -1.414]; likelihood z: [1.414, -1.414, 0, 0] (tiny raw scale)
    assert total == pytest.approx([2 * 1.41421356, -2 * 1.41421356, 1.41421356, -1.41421356])


def test_combine_ignores_absent_or_zero_weight_components():
    members = [MemberFitness(1.0, None, 0, 1), MemberFitness(0.0, None, 0, 1)]
    assert combine(members, {"verifiable": 1.0, "likelihood": 1.0}) == [1.0, -1.0]
    assert combine(members, {"verifiable": 0.0, "likelihood": 1.0}) == [0.0, 0.0]


class ScriptedClient:
    """Answers chats from a table; raises for prompts it does not know (a failing engine)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls = 0

    async def chat(self, body: dict) -> dict:
        self.calls += 1
        assert body["temperature"] == 0.0  # greedy
        prompt = body["messages"][-1]["content"]
        if prompt not in self.answers:
            raise RuntimeError("engine exploded")
        return {"choices": [{"message": {"content": self.answers[prompt]}}]}


class Engine:
    served_name = "learner"

    def __init__(self, client):
        self.client = client


def items(n: int) -> ItemSet:
    out = ItemSet()
    for i in range(n):
        out.verifiable.append(
            parse_item({"prompt": f"q{i}", "reference": str(i), "verifier": "number"}, i + 1)
        )
    return out


async def test_failed_items_score_zero_and_are_counted():
    client = ScriptedClient({"q0": "0", "q1": "it is 1, not 7", "q2": "2"})  # q3 fails
    ev = FitnessEvaluator(Engine(client), items(4), minibatch=4, max_tokens=8)
    result = await ev.evaluate(ev.batch(0))
    assert result.failed == 1 and result.items == 4
    assert result.verifiable == pytest.approx((1 + 0.2 + 1 + 0) / 4)
    assert result.likelihood is None


def test_minibatches_are_seeded_and_shared_by_an_iteration():
    ev = FitnessEvaluator(Engine(None), items(50), minibatch=8, max_tokens=8, seed=3)
    assert ev.batch(2) == ev.batch(2)
    assert ev.batch(2) != ev.batch(3)
    assert len(ev.batch(0).verifiable) == 8
    small = FitnessEvaluator(Engine(None), items(5), minibatch=8, max_tokens=8)
    assert len(small.batch(0).verifiable) == 5


def hostile_items() -> ItemSet:
    """Two ordinary items, one whose prompt the engine fails, one with a cyclic-$ref schema."""
    out = items(2)
    out.verifiable.append(parse_item({"prompt": "unknown", "reference": "1", "verifier": "number"}, 3))
    schema = {"type": "json_schema", "schema": {"$ref": "#"}}  # passes check_schema; fails at scoring
    out.verifiable.append(parse_item({"prompt": "q3", "reference": "{}", "verifier": schema}, 4))
    return out


ANSWERS = {"q0": "0", "q1": "1", "q3": "{}"}


async def test_verifier_failures_are_counted_apart_from_other_failures():
    ev = FitnessEvaluator(Engine(ScriptedClient(ANSWERS)), hostile_items(), minibatch=4, max_tokens=8)
    result = await ev.evaluate(ev.batch(0))
    assert result.items == 4 and result.failed == 2 and result.verifier_failed == 1
    assert result.verifiable == pytest.approx(2 / 4)


async def test_a_round_iteration_records_its_verifier_failures():
    """run_es on a scripted local engine: each member's hostile verifier is in the iteration record."""
    from learner.engines import LocalLearnerEngine
    from learner.es_loop import run_es
    from weights.config import ESConfig

    class Scripted(LocalLearnerEngine):
        async def _rpc(self, method: str, **kwargs) -> dict:
            stats = {"update_norm": 1.0, "update_sparsity": 0.0, "drift": 0.5, "drift_sparsity": 0.0}
            return stats if method == "es_update" else {}

    config = ESConfig.preset("cpu", population=4, iterations=2, minibatch=4, max_tokens=8)
    result = await run_es(Scripted(ScriptedClient(ANSWERS), "learner"), hostile_items(), config)
    assert [r.verifier_failed for r in result.records] == [4, 4]  # one item x 4 members
    assert [r.failed_items for r in result.records] == [8, 8]
    assert result.records[0].to_json()["verifier_failed"] == 4
