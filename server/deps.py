"""FastAPI dependencies: who is calling, and the typed services the lifespan keeps on ``app.state``.

Routes declare what they use (``db: DB``, ``versions: Versions``...) instead of reaching into
``request.app.state``; ``state(name)`` reads the one attribute the lifespan
(:mod:`server.app`) sets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from engine.replicas import ReplicaSet
from server.chat.serving import ChatService, ServedModel
from server.feedback.service import FeedbackService
from server.metrics import GatewayMetrics
from server.responses.service import ResponsesService
from server.rounds import Rounds
from server.settings import Settings
from server.versions.service import VersionService
from store.db import Database
from store.sink import IngestSink


# async (not def): FastAPI runs sync dependencies in a worker thread, a thread hop per request
# that cost ~0.1-0.2 ms of CPU here; these only read an attribute or hash a header.
async def api_caller(request: Request) -> str:
    """Key id of the caller of a chat or feedback route (401 without a valid key)."""
    return request.app.state.keys.caller(request)


async def admin_caller(request: Request) -> str:
    """Any /admin route: the admin key (401 otherwise)."""
    return request.app.state.keys.admin(request)


def state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning ``app.state.<name>``, the object the lifespan put there."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


Caller = Annotated[str, Depends(api_caller)]
Admin = Annotated[str, Depends(admin_caller)]
DB = Annotated[Database, Depends(state("db"))]
Engine = Annotated[ReplicaSet, Depends(state("engine"))]
Served = Annotated[ServedModel, Depends(state("served"))]
Chat = Annotated[ChatService, Depends(state("chat"))]
Responses = Annotated[ResponsesService, Depends(state("responses"))]
Feedback = Annotated[FeedbackService, Depends(state("feedback"))]
Versions = Annotated[VersionService, Depends(state("versions"))]
Metrics = Annotated[GatewayMetrics, Depends(state("metrics"))]
AppSettings = Annotated[Settings, Depends(state("settings"))]
Ingest = Annotated[IngestSink, Depends(state("ingest"))]
LearnerRounds = Annotated[Rounds | None, Depends(state("rounds"))]
