"""OpenAI-compatible routes: chat completions, text completions and models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.auth import Caller
from server.chat.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from server.chat.service import COMPLETION, Chat, Served, parse_json_body
from server.openapi import CHAT_ERRORS, CHAT_SUCCESS, doc

router = APIRouter(prefix="/v1")


@router.post(
    "/chat/completions",
    **doc(body=ChatCompletionRequest, errors=CHAT_ERRORS, responses=CHAT_SUCCESS),
)
async def chat_completions(request: Request, caller: Caller, chat: Chat):
    # The body is parsed by hand: invalid JSON gets our envelope, and the raw size is capped.
    body = parse_json_body(await request.body())
    return await chat.complete(body, caller)


@router.post("/completions", **doc(body=CompletionRequest, errors=CHAT_ERRORS, responses=CHAT_SUCCESS))
async def completions(request: Request, caller: Caller, chat: Chat):
    body = parse_json_body(await request.body())
    return await chat.complete(body, caller, COMPLETION)


@router.get("/models", response_model=ModelList)
async def list_models(_: Caller, served: Served) -> ModelList:
    card = ModelCard(
        id=served.name,
        created=served.created,
        version=served.version,
        root=served.name,
        tool_calling=served.tool_calling,
    )
    return ModelList(data=[card])
