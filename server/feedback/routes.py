"""Feedback routes (API key): rate, correct or give a reference answer for a completion.

    POST /v1/feedback          one item                     -> the feedback object
    POST /v1/feedback/batch    {"items": [...]} (all or nothing, up to feedback_batch_max)
    GET  /v1/feedback?completion_id=chatcmpl-...           -> {"object": "list", "data": [...]}

A caller rates and lists only its own completions (another key's: 404, as an unknown id) and
sees only the feedback it sent.

``Idempotency-Key`` header on the POSTs: the same key with the same body answers the first
result again (header ``Idempotent-Replayed: true``); with another body, 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic_core import to_json

from server.auth import Caller
from server.feedback.protocol import FeedbackBatchCreate, FeedbackCreate
from server.feedback.service import Feedback
from server.openapi import doc

router = APIRouter(prefix="/v1")
# beyond the automatic 400/401/413: no such completion, Idempotency-Key reused, store away
FEEDBACK_ERRORS = (404, 409, 503)


def _key(request: Request) -> str | None:
    # Read by hand, not as a Header() parameter: FastAPI's parameter machinery costs more per
    # request than the whole feedback service, on the hottest route we have.
    return request.headers.get("idempotency-key")


def _reply(body: dict, replayed: bool) -> Response:
    # to_json (Rust) instead of JSONResponse's json.dumps: this is the hottest route we serve.
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(to_json(body), media_type="application/json", headers=headers)


@router.post("/feedback", **doc(body=FeedbackCreate, errors=FEEDBACK_ERRORS))
async def create_feedback(request: Request, caller: Caller, service: Feedback):
    body, replayed = await service.submit_one(await request.body(), caller=caller, key=_key(request))
    return _reply(body, replayed)


@router.post("/feedback/batch", **doc(body=FeedbackBatchCreate, errors=FEEDBACK_ERRORS))
async def create_feedback_batch(request: Request, caller: Caller, service: Feedback):
    body, replayed = await service.submit_batch(await request.body(), caller=caller, key=_key(request))
    return _reply(body, replayed)


@router.get("/feedback", **doc(errors=(404, 503)))
async def list_feedback(
    caller: Caller, service: Feedback, completion_id: Annotated[str, Query(min_length=1, max_length=64)]
):
    return await service.list_for(completion_id, caller=caller)
