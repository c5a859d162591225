"""The gateway application: the lifespan's steps in order and the resources' routers.

``create_app(settings)`` builds the FastAPI app. Its lifespan starts each component in order
and registers its cleanup on one ``AsyncExitStack``, so whatever started is closed in reverse
order, also when a later step fails. Components put what routes need on ``app.state``.

This is the one module that knows every resource. A resource (``server.chat``,
``server.feedback``...) is a slice: its package owns its wire models (with their OpenAPI rules),
its service, the dependency its routes use, its router and its lifespan step. Imports inside
``server`` point down: settings, errors, metrics -> auth, middleware, storage, deps -> openapi
-> chat -> responses, feedback, versions, ops, dashboard -> admin -> app
(``tests/unit/test_imports.py`` checks it).

Run it with ``perennial serve`` (see ``perennial/serve.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from server import admin, chat, dashboard, feedback, openapi, ops, responses, versions
from server.auth import start_keys
from server.errors import install_error_handlers
from server.metrics import GatewayMetrics
from server.middleware import BodyLimitMiddleware, MetricsMiddleware, QuotaMiddleware
from server.quotas import KeyQuotas
from server.settings import Settings
from server.storage import start_store

# In this order (the order of the paths in the OpenAPI document).
RESOURCES = (chat, responses, ops, feedback, versions, admin, dashboard)

# A part of the lifespan that a composition root adds: started after the engine, cleaned up
# through the exit stack.
Component = Callable[[FastAPI, AsyncExitStack], Awaitable[None]]


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        start_keys(app, settings)
        await start_store(app, settings, stack)  # before the engine: fail fast
        feedback.start(app)
        await versions.start_engine(app, settings, stack)
        for start in app.state.components:
            await start(app, stack)
        chat.start(app)
        responses.start(app)
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
    quotas = KeyQuotas(settings.key_requests_per_minute, settings.key_concurrent_requests)
    app.add_middleware(QuotaMiddleware, quotas=quotas)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413s too
    for resource in RESOURCES:
        app.include_router(resource.router)
    openapi.install(app)
    return app
