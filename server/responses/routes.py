"""Responses API routes (API key).

POST /v1/responses               create (stream with ``"stream": true``)
GET  /v1/responses/{response_id} a stored response of the calling key
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from server.auth import Caller
from server.chat.service import parse_json_body
from server.openapi import CHAT_ERRORS, CHAT_SUCCESS, doc
from server.responses.protocol import ResponseRequest
from server.responses.service import Responses

router = APIRouter(prefix="/v1")


@router.post("/responses", **doc(body=ResponseRequest, errors=CHAT_ERRORS, responses=CHAT_SUCCESS))
async def create_response(request: Request, caller: Caller, responses: Responses):
    body = parse_json_body(await request.body())
    return await responses.create(body, caller)


@router.get("/responses/{response_id}", **doc(errors=(404, 503)))
async def get_response(
    caller: Caller, responses: Responses, response_id: Annotated[str, Path(min_length=1, max_length=64)]
):
    return await responses.retrieve(response_id, caller)
