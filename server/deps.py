"""FastAPI dependencies: who is calling, and the typed services the lifespan keeps on ``app.state``.

Routes declare what they use (``db: DB``, ``versions: Versions``...) instead of reaching into
``request.app.state``; each getter names the one attribute the lifespan
(:mod:`server.app`) sets.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from engine.runtime import EngineRuntime
from server.chat.serving import ChatService, ServedModel
from server.feedback.service import FeedbackService
from server.metrics import GatewayMetrics
from server.rounds import Rounds
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


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_engine(request: Request) -> EngineRuntime:
    return request.app.state.engine


async def get_served(request: Request) -> ServedModel:
    return request.app.state.served


async def get_chat(request: Request) -> ChatService:
    return request.app.state.chat


async def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.feedback


async def get_versions(request: Request) -> VersionService:
    return request.app.state.versions


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


async def get_ingest(request: Request) -> IngestSink:
    return request.app.state.ingest


async def get_rounds(request: Request) -> Rounds | None:
    return request.app.state.rounds


Caller = Annotated[str, Depends(api_caller)]
Admin = Annotated[str, Depends(admin_caller)]
DB = Annotated[Database, Depends(get_db)]
Engine = Annotated[EngineRuntime, Depends(get_engine)]
Served = Annotated[ServedModel, Depends(get_served)]
Chat = Annotated[ChatService, Depends(get_chat)]
Feedback = Annotated[FeedbackService, Depends(get_feedback)]
Versions = Annotated[VersionService, Depends(get_versions)]
Metrics = Annotated[GatewayMetrics, Depends(get_metrics)]
Ingest = Annotated[IngestSink, Depends(get_ingest)]
LearnerRounds = Annotated[Rounds | None, Depends(get_rounds)]
