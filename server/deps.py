"""FastAPI dependencies shared by every resource: ``state(name)`` and the lifespan's shared objects.

Routes declare what they use (``db: DB``, ``engine: Engine``...) instead of reaching into
``request.app.state``; ``state(name)`` reads the one attribute the lifespan (:mod:`server.app`)
sets. Each resource declares the dependency on its own service next to it (``Chat`` in
:mod:`server.chat.service`, ``Feedback`` in :mod:`server.feedback.service`...); who may call a
route is :mod:`server.auth`'s ``Caller`` and ``Admin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from engine.replicas import ReplicaSet
from server.metrics import GatewayMetrics
from server.settings import Settings
from store.db import Database
from store.sink import IngestSink


def state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning ``app.state.<name>``, the object the lifespan put there."""

    # async (not def): a sync dependency would cost a worker-thread hop per request.
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


DB = Annotated[Database, Depends(state("db"))]
Engine = Annotated[ReplicaSet, Depends(state("engine"))]
Metrics = Annotated[GatewayMetrics, Depends(state("metrics"))]
AppSettings = Annotated[Settings, Depends(state("settings"))]
Ingest = Annotated[IngestSink, Depends(state("ingest"))]
