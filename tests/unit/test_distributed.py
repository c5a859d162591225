"""The learner on Ray's driver logic, with fake actors (no Ray, no engine): who runs which member.

The real thing (a local Ray cluster, two vLLM learner engines, an actor killed mid-round) is
``tests/integration/test_learner_ray.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from learner.distributed import ActorState, NoActorsLeft, RayLearnerEngine, RayUnavailable, _assign_plans
from learner.fitness import MemberFitness


class FakeRemote:
    """``handle.evaluate.remote(...)``: an awaitable, like a Ray ObjectRef."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class FakeActor:
    """Scores a member as a pure function of (seed, sign); fails on its ``fail_on``-th call."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[tuple[int, int]] = []
        self.fail_on = fail_on
        self.evaluate = FakeRemote(self._evaluate)

    async def _evaluate(self, iteration, seed, sigma, sign):
        await asyncio.sleep(0.001 * (seed % 3))  # members finish out of order
        self.calls.append((seed, sign))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("engine died")
        return MemberFitness(verifiable=seed * sign / 100, likelihood=None, failed=0, items=1), 0.1, 0.2


class FakeCluster(RayLearnerEngine):
    def __init__(self, actors: list[FakeActor]):
        states = [ActorState(f"actor-{i}", a, {"ip": f"10.0.0.{i}"}) for i, a in enumerate(actors)]
        super().__init__(states, served_name="learner", owns_ray=False)
        self.killed: list[FakeActor] = []

    def _kill(self, handle) -> None:
        self.killed.append(handle)


def timings() -> dict[str, float]:
    return {"load_s": 0.0, "evaluate_s": 0.0, "yield_s": 0.0}


SEEDS = [11, 12, 13, 14, 15]
EXPECTED = [s * g / 100 for s in SEEDS for g in (1, -1)]


async def test_members_come_back_in_the_loops_order_whichever_actor_ran_them():
    actors = [FakeActor(), FakeActor(), FakeActor()]
    cluster = FakeCluster(actors)
    members = await cluster.evaluate_population(0, SEEDS, 1e-3, timings())
    assert [m.verifiable for m in members] == EXPECTED
    assert sorted(c for a in actors for c in a.calls) == sorted((s, g) for s in SEEDS for g in (1, -1))
    report = cluster.work_report()
    assert sum(w["members"] for w in report.values()) == len(EXPECTED)
    assert all(w["members"] > 0 for w in report.values())


async def test_a_failed_actors_member_is_run_again_on_another_and_the_result_is_unchanged():
    actors = [FakeActor(), FakeActor(fail_on=2)]
    cluster = FakeCluster(actors)
    spent = timings()
    members = await cluster.evaluate_population(0, SEEDS, 1e-3, spent)
    assert [m.verifiable for m in members] == EXPECTED
    assert cluster.killed == [actors[1]] and [s.name for s in cluster.live] == ["actor-0"]
    assert cluster.degraded and not cluster.dead  # the service starts a full set before the next round
    report = cluster.work_report()
    assert report["actor-1"] == {**report["actor-1"], "alive": False, "members": 1}
    assert report["actor-1"]["failures"] == ["RuntimeError: engine died"]
    assert report["actor-0"]["members"] == len(EXPECTED) - 1  # its own and the re-run one
    assert spent["evaluate_s"] == pytest.approx(0.2 * len(EXPECTED))  # the failed try is not counted
    # the next iteration: only the survivor, and the failure is no longer reported as new
    await cluster.evaluate_population(1, SEEDS, 1e-3, timings())
    assert cluster.work_report()["actor-1"]["failures"] == []


async def test_when_every_actor_fails_the_round_fails_with_their_errors():
    cluster = FakeCluster([FakeActor(fail_on=1), FakeActor(fail_on=1)])
    with pytest.raises(NoActorsLeft, match="engine died"):
        await cluster.evaluate_population(0, SEEDS, 1e-3, timings())


def test_actors_on_one_node_split_its_cores_and_other_nodes_keep_theirs():
    def state(name, node, cores):
        return ActorState(name, None, {"node_id": node, "cores": cores})

    states = [state("a", "n1", [0, 1, 2, 3]), state("b", "n1", [0, 1, 2, 3]), state("c", "n2", [0, 1])]
    _assign_plans(states, "all")
    assert [s.plan for s in states] == ["0-1", "2-3", "all"]  # alone on its node: every core
    _assign_plans(states, "auto")
    assert [s.plan for s in states] == ["auto", "auto", "auto"]
    with pytest.raises(RayUnavailable, match="3 learner actors on a node with 2 cores"):
        _assign_plans([state(x, "n", [0, 1]) for x in "xyz"], "all")
