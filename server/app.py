"""The gateway application: lifespan-owned resources and the routers.

``create_app(settings)`` builds the FastAPI app. Its lifespan starts each component in order
and registers its cleanup on one ``AsyncExitStack``, so whatever started is closed in reverse
order, also when a later step fails. Components put what routes need on ``app.state``.

Run it with ``perennial serve`` (see ``perennial/serve.py``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from redis.asyncio import Redis

from engine.client import EngineClient
from engine.replicas import Replica, ReplicaSet
from engine.runtime import EngineRuntime
from engine.supervisor import EngineSpec, EngineSupervisor
from engine.threads import replica_plans
from server import openapi, ops
from server.admin import data as admin_data
from server.admin import engine as admin_engine
from server.admin import learner as admin_learner
from server.admin import suites as admin_suites
from server.auth import KeyRing, load_or_create_admin_key
from server.chat import routes as chat_routes
from server.chat.serving import ChatService, ServedModel
from server.dashboard import router as dashboard_router
from server.errors import install_error_handlers
from server.feedback import routes as feedback_routes
from server.metrics import GatewayMetrics
from server.middleware import BodyLimitMiddleware, MetricsMiddleware
from server.responses import routes as responses_routes
from server.responses.service import ResponsesService
from server.settings import Settings
from server.storage import start_store
from server.versions import routes as versions_routes
from server.versions.redis_rollouts import RedisRollouts
from server.versions.rollouts import LocalRollouts, Rollouts
from server.versions.service import VersionService, boot_version
from server.versions.swap import HotSwapper, SwapTarget
from weights.prep import default_model_name, read_record, resolve_model_dir

log = logging.getLogger(__name__)

# A part of the lifespan that a composition root adds: started after the engine, cleaned up
# through the exit stack.
Component = Callable[[FastAPI, AsyncExitStack], Awaitable[None]]


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
    spec = EngineSpec(
        model_dir=model_dir,
        served_name=served_name,
        log_file=settings.logs_dir / ("engine.log" if index == 0 else f"engine-{index}.log"),
        dtype=settings.engine_dtype,
        max_model_len=settings.engine_max_model_len,
        kv_cache_gib=settings.engine_kv_cache_gib,
        port=settings.engine_port + index if settings.engine_port else 0,
        extra_args=settings.engine_extra_args,
        cpu_threads=cpu_threads or replica_plans(settings.engine_cpu_threads, 1)[0],
        idle_spin_s=settings.engine_idle_spin_s,
        chat_template=settings.chat_template,
        tool_call_parser=settings.tool_call_parser,
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


def start_keys(app: FastAPI, settings: Settings) -> None:
    admin_key, generated = load_or_create_admin_key(
        settings.admin_key.get_secret_value() if settings.admin_key else None,
        settings.admin_key_file,
    )
    if generated:
        # Shown once, on the console only (never through the logger).
        print(f"Generated admin key (kept in {settings.admin_key_file}):\n  {admin_key}", flush=True)
    app.state.keys = KeyRing([k.get_secret_value() for k in settings.api_keys], admin_key)


async def start_engine(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Start (or attach to) the serving replicas with the version the registry says serves.

    With redis coordination the served version is read, and the replicas attached, while
    holding the rollout lock: no other gateway's rollout changes what serves meanwhile.
    """
    base_dir = resolve_model_dir(settings.model_dir, settings.models_dir)
    app.state.model_dir = base_dir
    rollouts = await start_rollouts(settings, stack)
    async with rollouts.hold(wait_s=settings.engine_start_timeout_s):
        boot = await boot_version(app.state.db, base_dir, (read_record(base_dir) or {}).get("sha256"))
        served = ServedModel(name=settings.model_name or default_model_name(base_dir), version=boot.version)
        engine = build_replicas(settings, served.name, boot.path)
        stack.push_async_callback(engine.stop)
        swapper = HotSwapper(
            engine,
            served,
            SwapTarget(boot.version, boot.path, boot.engine_checksum),
            rollouts=rollouts,
            drain_timeout_s=settings.rollout_drain_timeout_s,
            settle_s=settings.rollout_settle_s,
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


async def start_rollouts(settings: Settings, stack: AsyncExitStack) -> Rollouts:
    """The rollout coordination: this process alone, or every gateway on the Redis prefix."""
    if settings.rollout_coordination == "local":
        return LocalRollouts()
    redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=2.0)
    stack.push_async_callback(redis.aclose)
    rollouts = RedisRollouts(
        redis,
        prefix=settings.redis_prefix,
        drain_timeout_s=settings.rollout_drain_timeout_s,
        lock_ttl_s=settings.rollout_lock_ttl_s,
    )
    await rollouts.start()  # Redis must answer: a gateway that cannot coordinate does not start
    stack.push_async_callback(rollouts.close)
    log.info("rollouts coordinated through Redis as %s", rollouts.name)
    return rollouts


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
    # what a failed rollout swaps back to must verify against what the engines hold now
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


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        start_keys(app, settings)
        recorder = await start_store(app, settings, stack)  # before the engine: fail fast
        await start_engine(app, settings, stack)
        for start in app.state.components:
            await start(app, stack)
        app.state.chat = ChatService(
            settings, app.state.engine, app.state.served, app.state.metrics, recorder
        )
        app.state.responses = ResponsesService(app.state.chat, app.state.db)
        yield


def create_app(settings: Settings, *, components: Sequence[Component] = ()) -> FastAPI:
    """The gateway app.

    Args:
        settings: the gateway's settings.
        components: started in order after the serving engine, each ``await start(app, stack)``
            (e.g. the embedded learner, which sets ``app.state.rounds``).
    """
    # /openapi.json is always served (clients generate from it); the docs pages only when
    # docs_enabled. FastAPI's pages load Swagger UI / ReDoc from cdn.jsdelivr.net: the reader's
    # browser fetches them, the gateway never does.
    docs = settings.docs_enabled
    app = FastAPI(
        title="Perennial",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.settings = settings
    app.state.components = list(components)
    app.state.rounds = None  # no learner unless a component plugs one in
    app.state.metrics = GatewayMetrics()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413s too
    for module in (
        chat_routes,
        responses_routes,
        ops,
        admin_engine,
        feedback_routes,
        admin_data,
        versions_routes,
        admin_learner,
        admin_suites,
    ):
        app.include_router(module.router)
    app.include_router(dashboard_router)  # the page is keyless; its data needs the admin key
    openapi.install(app)
    return app
