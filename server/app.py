"""The gateway application: lifespan-owned resources and the routes.

``create_app(settings)`` builds the FastAPI app; its lifespan prepares the model, starts (or
attaches to) the serving engine, and closes everything in ``finally``. Routes are thin: the
chat service lives in ``serving.py``, the wire models in ``protocol.py``.

Run it with ``perennial serve`` (see ``server/main.py``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from server.auth import KeyRing, load_or_create_admin_key
from server.engine.client import EngineClient
from server.engine.runtime import EngineRuntime
from server.engine.supervisor import EngineSpec, EngineSupervisor
from server.errors import install_error_handlers
from server.metrics import GatewayMetrics
from server.middleware import BodyLimitMiddleware, MetricsMiddleware
from server.model_prep import default_model_name, resolve_model_dir
from server.protocol import ModelCard, ModelList
from server.serving import ChatService, NullRecorder, ServedModel, parse_json_body
from server.settings import Settings

log = logging.getLogger(__name__)


def build_engine(settings: Settings, served_name: str, model_dir) -> EngineRuntime:
    if settings.engine_url:
        client = EngineClient(settings.engine_url, timeout_s=settings.request_timeout_s)
        return EngineRuntime(client)
    spec = EngineSpec(
        model_dir=model_dir,
        served_name=served_name,
        log_file=settings.logs_dir / "engine.log",
        dtype=settings.engine_dtype,
        max_model_len=settings.engine_max_model_len,
        kv_cache_gib=settings.engine_kv_cache_gib,
        port=settings.engine_port,
        extra_args=settings.engine_extra_args,
    )
    supervisor = EngineSupervisor(
        spec,
        start_timeout_s=settings.engine_start_timeout_s,
        max_restarts=settings.engine_max_restarts,
    )
    client = EngineClient(supervisor.url, timeout_s=settings.request_timeout_s)
    return EngineRuntime(client, supervisor)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_key, generated = load_or_create_admin_key(
        settings.admin_key.get_secret_value() if settings.admin_key else None,
        settings.admin_key_file,
    )
    if generated:
        # Shown once, on the console only (never through the logger).
        print(f"Generated admin key (kept in {settings.admin_key_file}):\n  {admin_key}", flush=True)
    app.state.keys = KeyRing([k.get_secret_value() for k in settings.api_keys], admin_key)

    model_dir = resolve_model_dir(settings.model_dir, settings.models_dir)
    served = ServedModel(name=settings.model_name or default_model_name(model_dir), version="base")
    engine = build_engine(settings, served.name, model_dir)
    app.state.served = served
    app.state.engine = engine
    app.state.chat = ChatService(settings, engine, served, app.state.metrics, NullRecorder())
    try:
        await engine.start(settings.engine_start_timeout_s)
        yield
    finally:
        await engine.stop()


# --- dependencies ------------------------------------------------------------------------------


def api_caller(request: Request) -> str:
    return request.app.state.keys.caller(request)


def admin_caller(request: Request) -> str:
    return request.app.state.keys.admin(request)


Caller = Annotated[str, Depends(api_caller)]
Admin = Annotated[str, Depends(admin_caller)]


# --- app -----------------------------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Perennial", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = GatewayMetrics()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413s too

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, caller: Caller):
        body = parse_json_body(await request.body())
        return await request.app.state.chat.complete(body, caller)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models(request: Request, _: Caller) -> ModelList:
        served: ServedModel = request.app.state.served
        card = ModelCard(id=served.name, created=served.created, version=served.version, root=served.name)
        return ModelList(data=[card])

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        engine: EngineRuntime = request.app.state.engine
        ok = engine.ready and await engine.client.healthy()
        body = {
            "status": "ok" if ok else "degraded",
            "gateway": "ok",
            "engine": "ok" if ok else engine.status()["state"],
            "model": request.app.state.served.name,
            "version": request.app.state.served.version,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        m: GatewayMetrics = request.app.state.metrics
        engine: EngineRuntime = request.app.state.engine
        m.engine_up.set(1 if engine.ready else 0)
        m.engine_restarts.set(engine.status().get("restarts", 0))
        return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/admin/engine")
    async def admin_engine(request: Request, _: Admin) -> dict:
        """The serving engine's state (admin only)."""
        return {**request.app.state.engine.status(), "model": request.app.state.served.name}

    return app
