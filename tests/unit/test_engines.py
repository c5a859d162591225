"""The learner's engine seam (learner/engines.py): one engine and the Ray engine, one ``run_es``.

The workers are scripts (no vLLM, no Ray): a member answers "1" when it is the ``+`` member of
an odd seed, so its verifier score, hence the update, is known. The real engines are
``tests/integration/test_learner_engine.py`` and ``test_learner_ray.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

from learner.distributed import ActorState, RayLearnerEngine
from learner.engines import ESEngine, LocalLearnerEngine
from learner.es_loop import run_es
from learner.fitness import MemberFitness
from learner.items import ItemSet, parse_item
from weights.config import ESConfig

CONFIG = ESConfig.preset("cpu", population=6, iterations=2, minibatch=1, max_tokens=4)
STATS = {"update_norm": 1.0, "update_sparsity": 0.0, "drift": 0.5, "drift_sparsity": 0.0}


def answer(seed: int, sign: int) -> str:
    return "1" if sign == 1 and seed % 2 else "0"


def items() -> ItemSet:
    return ItemSet(verifiable=[parse_item({"prompt": "q", "reference": "1", "verifier": "number"}, 1)])


class ScriptedClient:
    def __init__(self, engine: ScriptedEngine):
        self.engine = engine

    async def chat(self, body: dict) -> dict:
        seed, sign = self.engine.serving
        self.engine.log.append("chat")
        return {"choices": [{"message": {"content": answer(seed, sign)}}]}


class ScriptedEngine(LocalLearnerEngine):
    """A LocalLearnerEngine whose worker RPCs are a script."""

    def __init__(self) -> None:
        super().__init__(ScriptedClient(self), "learner")
        self.log: list = []
        self.serving: tuple[int, int] = (0, 0)

    async def _rpc(self, method: str, **kwargs) -> dict:
        if method == "es_load_member":
            self.serving = (kwargs["seed"], kwargs["sign"])
            self.log.append(("member", kwargs["seed"], kwargs["sign"]))
        else:
            self.log.append(method)
        return dict(STATS) if method == "es_update" else {}


class Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class ScriptedActor:
    """A Ray actor's methods (``handle.<method>.remote``) over the same script."""

    def __init__(self) -> None:
        self.calls: list = []
        self.evaluate = Remote(self._evaluate)
        self.prepare = Remote(self._prepare)
        self.engine_call = Remote(self._engine_call)

    async def _evaluate(self, iteration, seed, sigma, sign):
        self.calls.append(("member", seed, sign))
        return MemberFitness(float(answer(seed, sign)), None, 0, 1), 0.1, 0.2

    async def _prepare(self, items, options):
        self.calls.append(("prepare", options["minibatch"]))

    async def _engine_call(self, method, kwargs):
        self.calls.append(method)
        return dict(STATS) if method == "apply_update" else {}


def ray_engine(actors: list[ScriptedActor]) -> RayLearnerEngine:
    states = [ActorState(f"actor-{i}", a, {"ip": "10.0.0.1"}) for i, a in enumerate(actors)]
    return RayLearnerEngine(states, served_name="learner", owns_ray=False)


def test_both_engines_are_es_engines():
    assert isinstance(ScriptedEngine(), ESEngine)
    assert isinstance(ray_engine([ScriptedActor()]), ESEngine)
    assert ScriptedEngine().pausable and not ray_engine([]).pausable


def test_one_engine_is_degraded_when_its_process_is_gone():
    engine = ScriptedEngine()
    assert not engine.degraded  # attached, not started here: nothing to watch
    engine.supervisor = SimpleNamespace(pid=123)
    assert not engine.degraded
    engine.supervisor.pid = None
    assert engine.degraded


async def test_one_engine_yields_then_loads_and_scores_each_member_in_order():
    engine = ScriptedEngine()
    hooks: list[str] = []

    async def before_member() -> None:
        engine.log.append("yield")
        hooks.append("yield")

    result = await run_es(engine, items(), CONFIG, before_member=before_member)
    first = result.records[0]
    assert first.workers is None
    assert set(first.timings) == {"load_s", "evaluate_s", "update_s", "target_s", "yield_s"}
    members = [
        x
        for s in first.seeds
        for x in ("yield", ("member", s, 1), "chat", "yield", ("member", s, -1), "chat")
    ]
    assert engine.log[: len(members)] == members
    assert engine.log[len(members) : len(members) + 2] == ["es_update", "es_load_master"]
    assert len(hooks) == CONFIG.population * CONFIG.iterations


async def test_the_ray_engine_gives_the_same_update_and_reports_its_actors():
    local = await run_es(ScriptedEngine(), items(), CONFIG)
    actors = [ScriptedActor(), ScriptedActor()]
    result = await run_es(ray_engine(actors), items(), CONFIG)
    assert [r.seeds for r in result.records] == [r.seeds for r in local.records]
    assert [r.coefficients for r in result.records] == [r.coefficients for r in local.records]
    assert any(c != 0 for r in result.records for c in r.coefficients)
    for record in result.records:
        assert sum(w["members"] for w in record.workers.values()) == CONFIG.population
    for actor in actors:  # every actor prepares and applies every update
        assert actor.calls[0] == ("prepare", CONFIG.minibatch)
        assert actor.calls.count("apply_update") == CONFIG.iterations
