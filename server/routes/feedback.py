"""Feedback routes (API key): rate, correct or give a reference answer for a completion.

    POST /v1/feedback          one item                     -> the feedback object
    POST /v1/feedback/batch    {"items": [...]} (all or nothing, up to feedback_batch_max)
    GET  /v1/feedback?completion_id=chatcmpl-...           -> {"object": "list", "data": [...]}

``Idempotency-Key`` header on the POSTs: the same key with the same body answers the first
result again (header ``Idempotent-Replayed: true``); with another body, 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from server.deps import Caller
from server.feedback import FeedbackService

router = APIRouter(prefix="/v1")

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _reply(body: dict, replayed: bool) -> JSONResponse:
    return JSONResponse(body, headers={"Idempotent-Replayed": "true"} if replayed else None)


@router.post("/feedback")
async def create_feedback(request: Request, caller: Caller, key: IdempotencyKey = None):
    service: FeedbackService = request.app.state.feedback
    body, replayed = await service.submit_one(await request.body(), caller=caller, key=key)
    return _reply(body, replayed)


@router.post("/feedback/batch")
async def create_feedback_batch(request: Request, caller: Caller, key: IdempotencyKey = None):
    service: FeedbackService = request.app.state.feedback
    body, replayed = await service.submit_batch(await request.body(), caller=caller, key=key)
    return _reply(body, replayed)


@router.get("/feedback")
async def list_feedback(
    request: Request, _: Caller, completion_id: Annotated[str, Query(min_length=1, max_length=64)]
):
    service: FeedbackService = request.app.state.feedback
    return await service.list_for(completion_id)
