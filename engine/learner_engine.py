"""The driver's handle on one learner engine: seeds and coefficients go in, scalars come out.

``LearnerEngine`` wraps a vLLM OpenAI server whose worker runs ``ESWorkerExtension``. It never
moves weights across the process boundary: loading a member sends ``(seed, sigma, sign)``,
an update sends ``(seeds, coefficients, alpha, ...)``. Generation and log-likelihoods go
through the engine's OpenAI routes (``client`` / ``served_name``). The learner drives it as
``learner.engines.LocalLearnerEngine`` (this handle plus population evaluation), alone or as
each Ray actor's engine.

Prefix caching, per member (``prefix_cache=True``; off by default). The items of one member
share their chat template's head (the system prompt: a third of a short addition prompt's
tokens); with the option on, the engine caches prefixes and every weight change drops the
whole cache before anything is scored (``_load``), so KV computed under one member's weights
never serves another's. On our 2-core CPUs it measured slower (``bench/es_throughput.py``,
arm ``all+prefix``), hence off.

    engine = await LearnerEngine.start(model_dir, base_dir=base_dir, log_file=log)
    try:
        await engine.load_member(seed=123, sigma=1e-3, sign=+1)
        ...
    finally:
        await engine.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from engine.client import EngineClient
from engine.supervisor import EngineSpec, EngineSupervisor
from weights.meta import AWD_KINDS, NoiseSpec, SnapshotMeta

WORKER_EXTENSION = "engine.es_worker.ESWorkerExtension"


class LearnerEngine:
    """Async handle on a learner engine (started here, or an existing one to attach to)."""

    def __init__(
        self,
        client: EngineClient,
        served_name: str,
        supervisor: EngineSupervisor | None = None,
        *,
        prefix_cache: bool = False,
        load_mode: str = "auto",
        snapshot_root: Path | None = None,
    ):
        self.client = client
        self.served_name = served_name
        self.supervisor = supervisor
        self.master_dir: Path | None = None
        self.base_dir: Path | None = None
        self.noise = NoiseSpec()
        self.init_info: dict = {}
        self.prefix_cache = prefix_cache  # whether the engine caches prefixes (reset at every load)
        self.load_mode = (
            load_mode  # how members reach the kernels: auto | direct | reload (engine.kernel_load)
        )
        # the only directory snapshots may be written into (the worker refuses any other)
        self.snapshot_root = snapshot_root

    @property
    def base_url(self) -> str:
        return self.client.base_url

    @classmethod
    async def start(
        cls,
        model_dir: Path,
        *,
        log_file: Path,
        base_dir: Path | None = None,
        noise: NoiseSpec = NoiseSpec(),
        served_name: str = "learner",
        extra_args: list[str] | None = None,
        start_timeout_s: float = 600.0,
        cpu_threads: str = "auto",
        prefix_cache: bool = False,
        dtype: str = "auto",
        idle_spin_s: float | None = None,
        nice: int = 0,
        load_mode: str = "auto",
        snapshot_root: Path | None = None,
    ) -> Self:
        """Start a learner engine on ``model_dir`` (the parent) anchored to ``base_dir``.

        Args:
            model_dir: the parent model directory; the ES master starts from its weights.
            log_file: where the engine's output goes.
            base_dir: theta0 for AWD and the likelihood baseline (default: ``model_dir``).
            noise: the shared noise table to build in the worker.
            served_name: the model name the engine serves under.
            extra_args: more vLLM server arguments (e.g. ``["--enforce-eager"]``).
            start_timeout_s: how long to wait for the engine's health check.
            cpu_threads: the engine's thread plan (see ``engine.threads``).
            prefix_cache: cache prompt prefixes within a member (dropped at every load).
            dtype: the engine's ``--dtype`` (``engine.supervisor.resolve_dtype``); the ES master
                stays float32 whatever it is, and a member is rounded to it as it is loaded.
            idle_spin_s: how long the idle worker polls before it sleeps (``engine.idle``; None:
                vLLM's own wait).
            nice: the engine processes' CPU priority (0-19): above 0 it yields the cores to a
                serving engine on the same machine whenever that one has work.
            load_mode: how a member's weights reach the kernels: ``auto``, ``direct`` or
                ``reload`` (see ``engine.kernel_load``).
            snapshot_root: the only directory ``snapshot`` may write into (the learner's
                versions directory); None: snapshots are refused. Fixed in the worker at its
                first init, so no other process can point a snapshot (which replaces its
                directory) elsewhere.

        Returns:
            A ready handle whose engine has the master loaded.
        """
        spec = EngineSpec(
            model_dir=Path(model_dir),
            served_name=served_name,
            log_file=Path(log_file),
            worker_extension=WORKER_EXTENSION,
            # Cached KV from one member would corrupt another's rewards: on only with the reset
            # after every load (_load).
            prefix_caching=prefix_cache,
            extra_args=list(extra_args or []),
            cpu_threads=cpu_threads,
            dtype=dtype,
            idle_spin_s=idle_spin_s,
            nice=nice,
        )
        supervisor = EngineSupervisor(spec, start_timeout_s=start_timeout_s, max_restarts=0)
        await supervisor.start()
        engine = cls(
            EngineClient(supervisor.url),
            served_name,
            supervisor,
            prefix_cache=prefix_cache,
            load_mode=load_mode,
            snapshot_root=Path(snapshot_root) if snapshot_root is not None else None,
        )
        try:
            await engine.init_state(Path(model_dir), Path(base_dir or model_dir), noise)
        except BaseException:
            await engine.close()
            raise
        return engine

    async def _rpc(self, method: str, **kwargs: Any) -> dict:
        # rank 0's result (every worker applies the same seeds); EngineRPCError on failure
        return await self.client.rpc(method, **kwargs)

    async def _load(self, method: str, **kwargs: Any) -> dict:
        """A call that changes the served weights, then the prefix cache dropped."""
        result = await self._rpc(method, **kwargs)
        if self.prefix_cache:
            await self.client.reset_prefix_cache()
        return result

    async def init_state(self, master_dir: Path, base_dir: Path, noise: NoiseSpec = NoiseSpec()) -> dict:
        """(Re)load theta from ``master_dir`` and theta0 from ``base_dir``; serve the master."""
        info = await self._load(
            "es_init",
            master_dir=str(master_dir),
            base_dir=str(base_dir),
            table_size=noise.size,
            table_seed=noise.seed,
            load_mode=self.load_mode,
            snapshot_root=str(self.snapshot_root or ""),
        )
        self.master_dir, self.base_dir, self.noise = Path(master_dir), Path(base_dir), noise
        self.init_info = info
        return info

    async def ping(self) -> dict:
        """The worker's pid and its thread plan as applied."""
        return await self._rpc("es_ping")

    async def load_member(self, seed: int, sigma: float, sign: int) -> dict:
        """Serve ``theta + sign * sigma * eps(seed)``; returns the worker's timings."""
        return await self._load("es_load_member", seed=seed, sigma=sigma, sign=sign)

    async def load_master(self) -> dict:
        """Serve theta exactly."""
        return await self._load("es_load_master")

    async def load_base(self) -> dict:
        """Serve theta0 exactly."""
        return await self._load("es_load_base")

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
        """One ES step plus AWD on the master (not yet served: call ``load_master``)."""
        if awd_kind not in AWD_KINDS:
            raise ValueError(f"awd_kind must be one of {AWD_KINDS}")
        return await self._rpc(
            "es_update",
            seeds=list(seeds),
            coefficients=list(coefficients),
            alpha=alpha,
            population=population,
            awd_lambda=awd_lambda,
            awd_kind=awd_kind,
        )

    async def snapshot(self, out_dir: Path, meta: SnapshotMeta) -> SnapshotMeta:
        """Write the master as a model directory with ``meta.json``; returns that meta."""
        written = await self._rpc("es_snapshot", out_dir=str(out_dir), meta=meta.model_dump(mode="json"))
        return SnapshotMeta.model_validate(written)

    async def checksum(self) -> dict:
        """``{"master": sha256, "base": sha256, "loaded": what the engine serves}``."""
        return await self._rpc("es_checksum")

    async def drift(self) -> dict:
        """``{"drift": ||theta - theta0||, "unchanged": share, "loaded": ...}``."""
        return await self._rpc("es_drift")

    async def load_weights_from(self, model_dir: Path) -> dict:
        """Serve a model directory through vLLM's own reload (the serving hot-swap path).

        The master is untouched; ``load_master`` serves it again.
        """
        return await self._load("es_load_dir", model_dir=str(model_dir))

    async def close(self) -> None:
        """Stop the engine if this handle started it; close the HTTP client."""
        try:
            if self.supervisor is not None:
                await self.supervisor.stop()
        finally:
            await self.client.aclose()
