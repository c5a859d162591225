"""OpenAI-compatible routes: chat completions and models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.deps import Caller
from server.protocol import ModelCard, ModelList
from server.serving import ServedModel, parse_json_body

router = APIRouter(prefix="/v1")


@router.post("/chat/completions")
async def chat_completions(request: Request, caller: Caller):
    # The body is parsed by hand: invalid JSON gets our envelope, and the raw size is capped.
    body = parse_json_body(await request.body())
    return await request.app.state.chat.complete(body, caller)


@router.get("/models", response_model=ModelList)
async def list_models(request: Request, _: Caller) -> ModelList:
    served: ServedModel = request.app.state.served
    card = ModelCard(id=served.name, created=served.created, version=served.version, root=served.name)
    return ModelList(data=[card])
