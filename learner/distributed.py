"""The learner on Ray: one round's population spread over K learner engines, each a Ray actor.

A round needs N population members per iteration, and each member is one load (seed-defined
noise on the master) plus one fitness evaluation. With one engine they run one after another;
here K engines run them side by side:

* every actor (:class:`LearnerActor`) owns a whole learner engine
  (:class:`learner.engines.LocalLearnerEngine`: a vLLM server with the ES worker extension, on
  its GPU or its slice of a node's CPU cores) that scores members on the round's items;
* the driver (:class:`RayLearnerEngine`) hands members out, one at a time, to whichever actor
  is free; an actor returns the member's fitness, a few numbers;
* every actor applies the same update to its own master: only seeds and coefficients cross
  the network, never weights. The masters stay equal bit for bit (same fp32 arithmetic on the
  same noise), and before a snapshot is written their checksums are compared;
* one actor (the primary) writes the snapshot and serves the driver's other calls (the held-out
  target, the gate's suites and KL) through :class:`ActorClient`.

An actor that dies (its process, its engine, its node) is dropped: the members it held are run
again on the others, so the iteration's fitness values, hence its update, are unchanged. The
iteration's record lists, per actor, the members it evaluated and its failures; when the last
actor is gone the round fails with the last error.

Ray is optional (``pip install perennial[ray]``); without ``learner_ray`` set the learner runs
its one engine as before and never imports Ray. Paths (the parent snapshot, the base model, the
snapshot to write) are passed as strings: on several machines the data and model directories
must be on a filesystem every node mounts at the same path. See docs/ray.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.threads import replica_plans
from learner.engines import BeforeMember, LocalLearnerEngine
from learner.fitness import MemberFitness
from learner.items import ItemSet
from weights.meta import NoiseSpec, SnapshotMeta

log = logging.getLogger(__name__)

# The engine methods the driver may call on an actor (``LearnerActor.engine_call``).
ENGINE_METHODS = frozenset(
    {
        "init_state",
        "ping",
        "load_member",
        "load_master",
        "load_base",
        "apply_update",
        "snapshot",
        "checksum",
        "drift",
        "load_weights_from",
    }
)
# The engine client methods the driver may call through an actor (``ActorClient``).
CLIENT_METHODS = frozenset({"chat", "completions", "tokenize"})


class RayUnavailable(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it has no room for the actors."""


class NoActorsLeft(RuntimeError):
    """Every learner actor has died; the round cannot go on."""


class LearnerActor:
    """One learner engine inside a Ray actor (wrapped with ``ray.remote`` in :func:`_actor_class`)."""

    def __init__(self) -> None:
        self.engine: LocalLearnerEngine | None = None

    async def place(self) -> dict[str, Any]:
        """Where this actor runs: node, process, usable cores, GPUs Ray gave it."""
        import ray

        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "cores": sorted(os.sched_getaffinity(0)),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    async def start(self, model_dir: str, base_dir: str, options: dict[str, Any]) -> dict[str, Any]:
        """Start this actor's engine on ``model_dir`` anchored to ``base_dir``; its ping and init info."""
        for path in (model_dir, base_dir):
            if not Path(path).exists():
                raise FileNotFoundError(
                    f"{path} does not exist on this node: every Ray node must see the model and data "
                    "directories at the same path (a shared filesystem)"
                )
        options = dict(options)
        options["noise"] = NoiseSpec.model_validate(options["noise"])
        options["log_file"] = Path(options["log_file"])
        self.engine = await LocalLearnerEngine.start(Path(model_dir), base_dir=Path(base_dir), **options)
        return {**await self.engine.ping(), "init_info": self.engine.init_info}

    def _engine(self) -> LocalLearnerEngine:
        if self.engine is None:
            raise RuntimeError("the actor's engine is not started")
        return self.engine

    async def engine_call(self, method: str, kwargs: dict[str, Any]) -> Any:
        if method not in ENGINE_METHODS:
            raise ValueError(f"not an engine method: {method}")
        for name in ("master_dir", "base_dir", "model_dir", "out_dir"):
            if isinstance(kwargs.get(name), str):
                kwargs = {**kwargs, name: Path(kwargs[name])}
        return await getattr(self._engine(), method)(**kwargs)

    async def client_call(self, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        if method not in CLIENT_METHODS:
            raise ValueError(f"not an engine client method: {method}")
        return await getattr(self._engine().client, method)(*args, **kwargs)

    async def prepare(self, items: ItemSet, options: dict[str, Any]) -> None:
        """``LocalLearnerEngine.prepare`` on this actor's engine."""
        await self._engine().prepare(items, **options)

    async def evaluate(
        self, iteration: int, seed: int, sigma: float, sign: int
    ) -> tuple[MemberFitness, float, float]:
        """``LocalLearnerEngine.evaluate_member``: (fitness, load s, evaluate s)."""
        return await self._engine().evaluate_member(iteration, seed, sigma, sign)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    """``ray.remote(LearnerActor)``, made once (Ray is imported only when it is used)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        ray = import_ray()
        _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(LearnerActor)
    return _ACTOR_CLASS


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RayUnavailable("the learner on Ray needs the ray extra: pip install 'perennial[ray]'") from exc
    return ray


@dataclass
class ActorState:
    """The driver's view of one actor: its handle, where it runs, and the work it did this iteration."""

    name: str
    handle: Any
    place: dict[str, Any]
    plan: str = "all"
    alive: bool = True
    error: str | None = None
    members: int = 0
    load_s: float = 0.0
    evaluate_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def reset_work(self) -> None:
        self.members, self.load_s, self.evaluate_s, self.failures = 0, 0.0, 0.0, []

    def work(self) -> dict[str, Any]:
        return {
            "node": self.place.get("ip"),
            "alive": self.alive,
            "members": self.members,
            "load_s": round(self.load_s, 3),
            "evaluate_s": round(self.evaluate_s, 3),
            "failures": list(self.failures),
        }


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


class ActorClient:
    """The engine client of the actors, for the driver's held-out target, gate suites and KL.

    Outside ``evaluate_population`` every live actor serves the same weights (every load is
    broadcast), so each OpenAI-route call goes to the live actor with the fewest calls in
    flight: the gate's suites are scored by all actors at once. ``spread = False`` sends
    everything to the primary.
    """

    def __init__(self, owner: RayLearnerEngine):
        self._owner = owner
        self.spread = True
        self.in_flight: dict[str, int] = {}
        self.calls: dict[str, int] = {}  # per actor, since the start

    @property
    def base_url(self) -> str:
        return f"ray://{self._owner.primary.name}"

    def _pick(self) -> ActorState:
        if not self.spread:
            return self._owner.primary
        live = self._owner.live
        if not live:
            return self._owner.primary  # raises NoActorsLeft
        return min(live, key=lambda s: self.in_flight.get(s.name, 0))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        state = self._pick()
        self.in_flight[state.name] = self.in_flight.get(state.name, 0) + 1
        self.calls[state.name] = self.calls.get(state.name, 0) + 1
        try:
            return await state.handle.client_call.remote(method, args, kwargs)
        finally:
            self.in_flight[state.name] -= 1

    # the ``engine.client.EngineClient`` methods that the driver's scoring uses (evals.scoring,
    # learner.fitness, learner.kl)
    async def chat(self, body: dict) -> dict:
        return await self._call("chat", body)

    async def completions(self, body: dict) -> dict:
        return await self._call("completions", body)

    async def tokenize(self, body: dict) -> dict:
        return await self._call("tokenize", body)

    async def aclose(self) -> None:
        return None


class RayLearnerEngine:
    """K learner engines as Ray actors, an :class:`learner.engines.ESEngine`.

    Every weight-changing call (``init_state``, ``apply_update``, the ``load_*`` calls) goes to
    every live actor, so outside ``evaluate_population`` they all serve the same weights and
    :class:`ActorClient` spreads the driver's scoring over them; read-only calls go to the
    primary. ``evaluate_population`` is the distributed part.
    """

    pausable = False  # the chat guard pauses one local engine; the actors run on their own cores
    supervisor = None  # no local process: liveness is ``degraded`` / ``dead``

    def __init__(self, actors: list[ActorState], *, served_name: str, owns_ray: bool):
        self.actors = actors
        self.served_name = served_name
        self.owns_ray = owns_ray
        self.client = ActorClient(self)
        self.master_dir: Path | None = None
        self.base_dir: Path | None = None
        self.noise = NoiseSpec()
        self.init_info: dict = {}
        self.on_member: Callable[[ActorState, int], Awaitable[None] | None] | None = (
            None  # tests: kill mid-round
        )

    # --- start and stop ----------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        model_dir: Path,
        *,
        address: str,
        log_dir: Path,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float | None = None,
        base_dir: Path | None = None,
        noise: NoiseSpec = NoiseSpec(),
        served_name: str = "learner",
        extra_args: list[str] | None = None,
        start_timeout_s: float = 600.0,
        cpu_threads: str = "all",
        prefix_cache: bool = False,
        dtype: str = "auto",
        idle_spin_s: float | None = None,
        nice: int = 0,
        snapshot_root: Path | None = None,
    ) -> RayLearnerEngine:
        """Connect to Ray (``address``: ``local``, ``auto``, ``HOST:PORT`` or ``ray://...``), start the actors.

        Args:
            actors: how many engines (None: one per GPU of the cluster; without GPUs, one per
                ``cpus_per_actor`` CPUs).
            cpus_per_actor: Ray CPUs each actor reserves.
            gpus_per_actor: Ray GPUs each actor reserves (None: 1 when the cluster has GPUs, else 0).
            cpu_threads: ``all`` splits each node's usable cores between the actors on it;
                any other plan is given to every actor as is.
            The rest as :meth:`engine.learner_engine.LearnerEngine.start`.
        """
        ray = import_ray()
        owns_ray = False
        if not ray.is_initialized():
            try:
                if address == "local":
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
                    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
                    owns_ray = True
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - any connection failure has one meaning here
                raise RayUnavailable(
                    f"cannot reach the Ray cluster at {address!r}: {_describe(exc)}"
                ) from exc
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if gpus >= 1 else 0.0
        if actors is None:
            actors = (
                int(gpus // gpus_per_actor)
                if gpus_per_actor
                else int(resources.get("CPU", 1) // cpus_per_actor)
            )
        if actors < 1:
            raise RayUnavailable(f"no room for a learner actor in the cluster ({resources})")
        need_cpu, need_gpu = actors * cpus_per_actor, actors * gpus_per_actor
        if need_cpu > resources.get("CPU", 0) or need_gpu > gpus:
            raise RayUnavailable(
                f"{actors} actors need {need_cpu:g} CPUs and {need_gpu:g} GPUs; the cluster has "
                f"{resources.get('CPU', 0):g} and {gpus:g}"
            )
        remote = _actor_class().options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)
        handles = [remote.remote() for _ in range(actors)]
        states = []
        try:
            places = await asyncio.gather(*(h.place.remote() for h in handles))
            states = [
                ActorState(f"actor-{i}", h, p) for i, (h, p) in enumerate(zip(handles, places, strict=True))
            ]
            _assign_plans(states, cpu_threads)
            log_dir = Path(log_dir)
            log_dir.mkdir(parents=True, exist_ok=True)
            options = {
                "noise": noise.model_dump(),
                "served_name": served_name,
                "extra_args": list(extra_args or []),
                "start_timeout_s": start_timeout_s,
                "prefix_cache": prefix_cache,
                "dtype": dtype,
                "idle_spin_s": idle_spin_s,
                "nice": nice,
                "snapshot_root": str(snapshot_root) if snapshot_root is not None else None,
            }
            pings = await asyncio.gather(
                *(
                    s.handle.start.remote(
                        str(model_dir),
                        str(base_dir or model_dir),
                        {**options, "cpu_threads": s.plan, "log_file": str(log_dir / f"{s.name}.log")},
                    )
                    for s in states
                )
            )
        except BaseException:
            for handle in handles:
                ray.kill(handle, no_restart=True)
            if owns_ray:
                ray.shutdown()
            raise
        for state, ping in zip(states, pings, strict=True):
            state.place["threads"] = ping.get("threads")
            log.info(
                "learner %s on %s: cores %s, gpus %s",
                state.name,
                state.place["ip"],
                state.plan,
                state.place["gpus"],
            )
        engine = cls(states, served_name=served_name, owns_ray=owns_ray)
        engine.init_info = pings[0].get("init_info") or {}
        engine.master_dir = Path(model_dir)
        engine.base_dir = Path(base_dir or model_dir)
        engine.noise = noise
        return engine

    async def close(self) -> None:
        """Stop every actor's engine, end the actors, and a local cluster this handle started."""
        ray = import_ray()
        live = self.live
        await asyncio.gather(*(s.handle.close.remote() for s in live), return_exceptions=True)
        for state in self.actors:
            ray.kill(state.handle, no_restart=True)
            state.alive = False
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    # --- the actors ----------------------------------------------------------------------------

    @property
    def live(self) -> list[ActorState]:
        return [s for s in self.actors if s.alive]

    @property
    def dead(self) -> bool:
        """No actor left."""
        return not self.live

    @property
    def degraded(self) -> bool:
        """An actor was lost (the learner service starts a full set before the next round)."""
        return any(not s.alive for s in self.actors)

    @property
    def primary(self) -> ActorState:
        live = self.live
        if not live:
            raise NoActorsLeft(self._last_error())
        return live[0]

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def _last_error(self) -> str:
        errors = [f"{s.name}: {s.error}" for s in self.actors if s.error]
        return "every learner actor died" + (f" ({'; '.join(errors)})" if errors else "")

    def _drop(self, state: ActorState, exc: BaseException) -> None:
        state.alive, state.error = False, _describe(exc)
        state.failures.append(state.error)
        log.warning("learner %s dropped: %s", state.name, state.error)
        self._kill(state.handle)  # a live actor whose engine failed: end it and its engine

    def _kill(self, handle: Any) -> None:
        import_ray().kill(handle, no_restart=True)

    async def _on_primary(self, method: str, **kwargs: Any) -> Any:
        return await self.primary.handle.engine_call.remote(method, kwargs)

    async def _on_all(self, call: Callable[[ActorState], Awaitable[Any]]) -> Any:
        """``call`` for every live actor at once; the first survivor's result. An actor whose
        call fails is dropped; NoActorsLeft if none is left."""
        live = self.live
        if not live:
            raise NoActorsLeft(self._last_error())
        results = await asyncio.gather(*(call(s) for s in live), return_exceptions=True)
        for state, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                self._drop(state, result)
        ok = [r for r in results if not isinstance(r, BaseException)]
        if not ok:
            raise NoActorsLeft(self._last_error())
        return ok[0]

    async def _broadcast(self, method: str, **kwargs: Any) -> Any:
        """Engine ``method`` on every live actor; the primary's result."""
        return await self._on_all(lambda s: s.handle.engine_call.remote(method, kwargs))

    # --- the ESEngine weight operations -----------------------------------------------------------

    async def init_state(self, master_dir: Path, base_dir: Path, noise: NoiseSpec = NoiseSpec()) -> dict:
        info = await self._broadcast(
            "init_state", master_dir=str(master_dir), base_dir=str(base_dir), noise=noise
        )
        self.master_dir, self.base_dir, self.noise, self.init_info = (
            Path(master_dir),
            Path(base_dir),
            noise,
            info,
        )
        return info

    async def ping(self) -> dict:
        return await self._on_primary("ping")

    async def load_member(self, seed: int, sigma: float, sign: int) -> dict:
        return await self._broadcast("load_member", seed=seed, sigma=sigma, sign=sign)

    async def load_master(self) -> dict:
        return await self._broadcast("load_master")

    async def load_base(self) -> dict:
        return await self._broadcast("load_base")

    async def apply_update(self, seeds: list[int], coefficients: list[float], **kwargs: Any) -> dict:
        return await self._broadcast(
            "apply_update", seeds=list(seeds), coefficients=list(coefficients), **kwargs
        )

    async def checksum(self) -> dict:
        return await self._on_primary("checksum")

    async def checksums(self) -> dict[str, dict]:
        """Every live actor's checksums (``{"actor-0": {"master": ...}, ...}``)."""
        live = self.live
        sums = await asyncio.gather(*(s.handle.engine_call.remote("checksum", {}) for s in live))
        return {s.name: c for s, c in zip(live, sums, strict=True)}

    async def drift(self) -> dict:
        return await self._on_primary("drift")

    async def load_weights_from(self, model_dir: Path) -> dict:
        return await self._broadcast("load_weights_from", model_dir=str(model_dir))

    async def snapshot(self, out_dir: Path, meta: SnapshotMeta) -> SnapshotMeta:
        """Check every actor's master is the same, then the primary writes it."""
        sums = await self.checksums()
        masters = {name: s["master"] for name, s in sums.items()}
        if len(set(masters.values())) != 1:
            raise RuntimeError(f"learner actors diverged (master checksums differ): {masters}")
        return await self._on_primary("snapshot", out_dir=str(out_dir), meta=meta)

    # --- the population ------------------------------------------------------------------------

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
        """Every actor prepares the round's fitness (``LocalLearnerEngine.prepare``)."""
        options = {
            "minibatch": minibatch,
            "max_tokens": max_tokens,
            "seed": seed,
            "concurrency": concurrency,
            "weights": weights,
        }
        await self._on_all(lambda s: s.handle.prepare.remote(items, options))

    async def evaluate_population(
        self,
        iteration: int,
        seeds: Sequence[int],
        sigma: float,
        timings: dict[str, float],
        before_member: BeforeMember | None = None,
    ) -> list[MemberFitness]:
        """Fitness of ``+eps`` and ``-eps`` of every seed, in ``LocalLearnerEngine``'s order.

        Members go to whichever actor is free. A member whose actor fails is queued again and
        run by another; the failed actor is dropped for the rest of the round.
        """
        pending = [(i, seed, sign) for i, (seed, sign) in enumerate((s, g) for s in seeds for g in (1, -1))]
        results: list[MemberFitness | None] = [None] * len(pending)
        for state in self.actors:
            state.reset_work()
        while pending:
            live = self.live
            if not live:
                raise NoActorsLeft(self._last_error())
            queue, pending = pending, []
            await asyncio.gather(
                *(
                    self._work(s, iteration, sigma, queue, pending, results, timings, before_member)
                    for s in live
                )
            )
            pending.sort()
        return [r for r in results if r is not None]

    async def _work(
        self,
        state: ActorState,
        iteration: int,
        sigma: float,
        queue: list[tuple[int, int, int]],
        failed: list[tuple[int, int, int]],
        results: list[MemberFitness | None],
        timings: dict[str, float],
        before_member: BeforeMember | None,
    ) -> None:
        """One actor's share: take the next member from ``queue`` until it is empty or the actor fails."""
        while queue and state.alive:
            job = queue.pop(0)
            index, seed, sign = job
            if before_member is not None:
                waited = time.perf_counter()
                await before_member()
                timings["yield_s"] += time.perf_counter() - waited
            try:
                fitness, load_s, evaluate_s = await state.handle.evaluate.remote(iteration, seed, sigma, sign)
            except Exception as exc:  # noqa: BLE001 - the actor, its engine or its node failed
                failed.append(job)
                self._drop(state, exc)
                return
            results[index] = fitness
            state.members += 1
            state.load_s += load_s
            state.evaluate_s += evaluate_s
            timings["load_s"] += load_s
            timings["evaluate_s"] += evaluate_s
            if self.on_member is not None and (hook := self.on_member(state, index)) is not None:
                await hook

    def work_report(self) -> dict[str, dict[str, Any]]:
        """Per actor: node, alive, members evaluated, seconds, failures (this iteration)."""
        return {s.name: s.work() for s in self.actors}


def _assign_plans(states: list[ActorState], cpu_threads: str) -> None:
    """Each actor's thread plan: with ``all``, its node's usable cores split between the actors there."""
    by_node: dict[str, list[ActorState]] = {}
    for state in states:
        by_node.setdefault(state.place["node_id"], []).append(state)
    for group in by_node.values():
        available = group[0].place["cores"]
        if cpu_threads == "all" and len(group) > len(available):
            raise RayUnavailable(f"{len(group)} learner actors on a node with {len(available)} cores")
        for state, plan in zip(group, replica_plans(cpu_threads, len(group), available), strict=True):
            state.plan = plan
