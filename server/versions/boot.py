"""The serving engines at boot: the replicas, with the version the registry says serves.

``start_engine`` is the gateway lifespan's engine step: it starts (or attaches to) the serving
replicas, makes every one hold the serving version, and sets ``app.state.served``, ``.engine``,
``.swapper`` and ``.versions`` (the hot swapper and the version service over them). With Redis
coordination this happens under the rolling swap lock, so no other gateway's rolling swap changes what
serves meanwhile. ``build_engine`` is also how ``perennial engine`` starts one engine.
"""

from __future__ import annotations

import functools
import logging
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from redis.asyncio import Redis

from engine.chat_format import chat_format
from engine.client import EngineClient
from engine.replicas import Replica, ReplicaSet
from engine.runtime import EngineRuntime
from engine.supervisor import EngineSpec, EngineSupervisor
from engine.threads import replica_plans
from server.chat.service import ServedModel
from server.settings import Settings
from server.versions.coordination import LocalCoordination, SwapCoordination
from server.versions.redis_coordination import RedisCoordination
from server.versions.service import VersionService, boot_version
from server.versions.swap import HotSwapper, SwapTarget
from weights.prep import default_model_name, read_record, resolve_model_dir

log = logging.getLogger(__name__)


def build_engine(
    settings: Settings,
    served_name: str,
    model_dir: Path,
    *,
    index: int = 0,
    url: str | None = None,
    cpu_threads: str | None = None,
) -> EngineRuntime:
    """One engine: a client of ``url`` (attached), or supervised child process ``index``.

    Child ``index`` listens on ``engine_port + index`` (a free port when ``engine_port`` is 0) and
    logs to ``engine.log`` (the first) or ``engine-<index>.log``.
    """
    if url:
        client = EngineClient(url, timeout_s=settings.request_timeout_s)
        return EngineRuntime(client)
    chat = chat_format(settings, model_dir)
    spec = EngineSpec(
        model_dir=model_dir,
        served_name=served_name,
        log_file=settings.logs_dir / ("engine.log" if index == 0 else f"engine-{index}.log"),
        dtype=settings.engine_dtype,
        max_model_len=settings.engine_max_model_len,
        kv_cache_gib=settings.engine_kv_cache_gib,
        port=settings.engine_port + index if settings.engine_port else 0,
        extra_args=settings.engine_args,
        cpu_threads=cpu_threads or replica_plans(settings.engine_cpu_threads, 1)[0],
        idle_spin_s=settings.engine_idle_spin_s,
        # the settings, else the model family's (SmolLM2: tool calling out of the box)
        chat_template=chat.chat_template,
        tool_call_parser=chat.tool_call_parser,
    )
    supervisor = EngineSupervisor(
        spec,
        start_timeout_s=settings.engine_start_timeout_s,
        max_restarts=settings.engine_max_restarts,
    )
    client = EngineClient(supervisor.url, timeout_s=settings.request_timeout_s)
    return EngineRuntime(client, supervisor)


def build_replicas(settings: Settings, served_name: str, model_dir: Path) -> ReplicaSet:
    """The serving replicas: every attached URL, else ``engine_replicas`` supervised engines."""
    attached = settings.attached_engines
    if attached:
        runtimes = [build_engine(settings, served_name, model_dir, url=u) for u in attached]
    else:
        plans = replica_plans(settings.engine_cpu_threads, settings.engine_replicas)
        runtimes = [
            build_engine(settings, served_name, model_dir, index=i, cpu_threads=plan)
            for i, plan in enumerate(plans)
        ]
    return ReplicaSet([Replica(f"engine-{i}", runtime) for i, runtime in enumerate(runtimes)])


async def start_engine(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Start (or attach to) the serving replicas with the version the registry says serves.

    With redis coordination the served version is read, and the replicas attached, while
    holding the rolling swap lock: no other gateway's rolling swap changes what serves meanwhile.
    """
    base_dir = resolve_model_dir(settings.model_dir, settings.models_dir)
    app.state.model_dir = base_dir
    coordination = await start_coordination(settings, stack)
    async with coordination.hold(wait_s=settings.engine_start_timeout_s):
        boot = await boot_version(app.state.db, base_dir, (read_record(base_dir) or {}).get("sha256"))
        tools = chat_format(settings, boot.path).describe()
        if settings.attached_engines:  # started by someone else, with their own flags
            tools.update(source="attached", note="the attached engines' own flags decide tool calling")
        log.info("tool calling (%s): %s", tools["source"], tools["note"])
        served = ServedModel(
            name=settings.model_name or default_model_name(base_dir), version=boot.version, tool_calling=tools
        )
        engine = build_replicas(settings, served.name, boot.path)
        stack.push_async_callback(engine.stop)
        swapper = HotSwapper(
            engine,
            served,
            SwapTarget(boot.version, boot.path, boot.engine_checksum),
            coordination=coordination,
            drain_timeout_s=settings.swap_drain_timeout_s,
            settle_s=settings.swap_settle_s,
        )
        for replica in engine.replicas:
            supervisor = replica.runtime.supervisor
            if supervisor is not None:  # at boot and after every restart, before it serves
                supervisor.on_healthy.append(functools.partial(prepare_swaps, replica.runtime))
                supervisor.on_healthy.append(swapper.restorer(replica))
            else:  # an attached engine that comes back: what it held, before it serves
                replica.runtime.on_recovered.append(swapper.restorer(replica))
        await engine.start(settings.engine_start_timeout_s)
        versions = VersionService(app.state.db, swapper, settings.retention_policy())
        await attach_boot_version(engine, swapper, versions, boot)
    app.state.served = served
    app.state.engine = engine
    app.state.swapper = swapper
    app.state.versions = versions


async def start_coordination(settings: Settings, stack: AsyncExitStack) -> SwapCoordination:
    """The rolling swap coordination: this process alone, or every gateway on the Redis prefix."""
    if settings.swap_coordination == "local":
        return LocalCoordination()
    redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=2.0)
    stack.push_async_callback(redis.aclose)
    coordination = RedisCoordination(
        redis,
        prefix=settings.redis_prefix,
        drain_timeout_s=settings.swap_drain_timeout_s,
        lock_ttl_s=settings.swap_lock_ttl_s,
    )
    await coordination.start()  # Redis must answer: a gateway that cannot coordinate does not start
    stack.push_async_callback(coordination.close)
    log.info("rolling swaps coordinated through Redis as %s", coordination.name)
    return coordination


async def attach_boot_version(
    engine: ReplicaSet, swapper: HotSwapper, versions: VersionService, boot
) -> None:
    """Make every replica hold ``boot`` (an attached engine may hold anything) and record it.

    Replicas must hold equal weights: each one's checksum is compared with the first's.
    """
    target = SwapTarget(boot.version, boot.path, boot.engine_checksum)
    checksums = []
    for replica in engine.replicas:
        client = replica.client
        if replica.runtime.supervisor is None and await client.weight_version() != boot.version:
            await client.rpc("perennial_load_weights", path=str(boot.path))
            await client.reset_prefix_cache()
        await client.update_weight_version(boot.version)
        checksums.append((await client.rpc("perennial_weights_checksum"))["checksum"])
    checksum = checksums[0]
    if boot.engine_checksum and checksum != boot.engine_checksum:
        log.warning(
            "engine checksum of %s changed since it last served (dtype or engine "
            "settings changed?); recording the new one",
            boot.version,
        )
    odd = [r.name for r, c in zip(engine.replicas, checksums, strict=True) if c != checksum]
    if odd:
        raise RuntimeError(
            f"replicas {odd} hold other weights than {engine.replicas[0].name} after loading "
            f"{boot.version}: every replica must run the same engine build, dtype and settings"
        )
    swapper.held = {r.name: replace(target, checksum=checksum) for r in engine.replicas}
    # what a failed rolling swap swaps back to must verify against what the engines hold now
    swapper.current = replace(target, checksum=checksum)
    await versions.record_boot(checksum)


async def prepare_swaps(engine) -> None:
    """Prove the engine's direct weight loader now, so the first hot swap is as short as later ones.

    Runs while the supervisor holds the (re)started engine back from serving. Best effort: if
    it fails, the first swap takes vLLM's reload and proves the loader then.
    """
    try:
        report = await engine.client.rpc("perennial_prepare_swaps")
        log.info(
            "swap path prepared in %.2f s (direct loader %s)", report["seconds"], report["direct_loader"]
        )
    except Exception as exc:  # noqa: BLE001 - a slower first swap, not a failed boot
        log.warning("could not prepare the direct swap path (%s); the first swap will use vLLM's reload", exc)
