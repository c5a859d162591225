"""The Responses API, served by the chat engine: one response = one chat completion.

A request is translated to the chat it means (``instructions`` as the system message, the
conversation of ``previous_response_id`` before ``input``), validated with the same limits as
chat, sent to the engine, and answered as a ``response`` object (streamed as OpenAI's event
sequence). Ids are ``resp_<32 hex>``; the reply's output message is ``msg_<same hex>``. The
weights version is in the ``x-perennial-model-version`` header and in ``system_fingerprint``
(an extra field, as on chat completions).

``store: true`` (the default) records the response as an interaction of kind ``response``
(the chat it was translated to, so feedback on ``resp_...`` ids trains the model like chat
feedback), retrievable with ``GET /v1/responses/{id}`` and usable as ``previous_response_id``
by the key that created it. ``store: false`` keeps it out of the log: no retrieval, no
feedback, no learning. Recent responses are also kept in memory, so a follow-up can chain
before the ingest pipeline has written the row.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from engine.client import EngineUnavailable
from server.chat.protocol import ParamError
from server.chat.service import (
    ID_HEADER,
    VERSION_HEADER,
    ChatService,
    Exchange,
    engine_errors,
    fingerprint,
    record_interaction,
)
from server.deps import state
from server.errors import APIError, validation_error
from server.responses import tools as function_tools
from server.responses.protocol import ResponseRequest
from store.db import Database
from store.models import Interaction as InteractionRow

log = logging.getLogger(__name__)

ID_PREFIX = "resp_"


@dataclass
class StoredResponse:
    """What a follow-up or a retrieval needs of a stored response."""

    caller: str
    messages: list[dict[str, str]]  # the chat the model saw, instructions first when given
    has_instructions: bool
    output_text: str
    body: dict[str, Any]  # the response object
    tool_calls: list[dict[str, Any]] | None = None  # the reply's, as chat tool calls

    def conversation(self) -> list[dict[str, Any]]:
        """The turns a follow-up continues: without this response's instructions (as OpenAI)."""
        turns = self.messages[1:] if self.has_instructions else self.messages
        return [*turns, reply_message(self.output_text, self.tool_calls)]


def reply_message(text: str, tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The assistant's chat message of a reply: its text, and its tool calls when it made any."""
    if not tool_calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text or None, "tool_calls": tool_calls}


def _usage(usage: dict | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _message(msg_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": msg_id, "status": status, "role": "assistant", "content": content}


class ResponsesService:
    """``POST /v1/responses`` and ``GET /v1/responses/{id}`` over the chat service's engine."""

    def __init__(self, chat: ChatService, db: Database | None, *, remember: int = 1024):
        self.chat = chat
        self.db = db
        self.remember = remember
        self._recent: OrderedDict[str, StoredResponse] = OrderedDict()

    # --- request -> chat ------------------------------------------------------------------

    def _validate(self, body: dict[str, Any]) -> ResponseRequest:
        try:
            return ResponseRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc

    async def _messages(self, request: ResponseRequest, caller: str) -> list[dict[str, str]]:
        try:
            turns = request.input_messages()
        except ParamError as exc:
            raise APIError(400, str(exc), param=exc.param, code="invalid_value") from exc
        if request.previous_response_id:
            previous = await self.find(request.previous_response_id, caller)
            if previous is None:
                raise APIError(
                    404,
                    f"previous_response_id: no stored response {request.previous_response_id!r}",
                    param="previous_response_id",
                    code="response_not_found",
                )
            turns = [*previous.conversation(), *turns]
        if request.instructions:
            turns = [{"role": "system", "content": request.instructions}, *turns]
        return turns

    def _chat_request(self, request: ResponseRequest, messages: list[dict[str, str]]):
        body = {"model": request.model, "messages": messages, "stream": request.stream}
        body.update(request.chat_fields())
        try:
            return self.chat.validate(body)
        except APIError as exc:  # name the parameter as this endpoint calls it
            ours = {"max_tokens": "max_output_tokens", "response_format": "text.format.schema"}
            if exc.param in ours:
                exc.message = exc.message.replace(exc.param, ours[exc.param])
                exc.param = ours[exc.param]
            raise

    # --- the response object --------------------------------------------------------------

    def _object(
        self,
        request: ResponseRequest,
        response_id: str,
        created_at: int,
        status: str,
        text: str | None,
        usage: dict | None,
        version: str,
        calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        msg_id = "msg_" + response_id.removeprefix(ID_PREFIX)
        output = [] if text is None or (calls and not text) else [_message(msg_id, text, status)]
        output += function_tools.call_items(response_id, calls)
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": response_id,
            "object": "response",
            "created_at": created_at,
            "status": status,
            "model": self.chat.served.name,
            "output": output,
            "instructions": request.instructions,
            "previous_response_id": request.previous_response_id,
            "max_output_tokens": request.max_output_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "text": request.text_config(),
            "metadata": request.metadata or {},
            "store": request.store,
            "user": request.user,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "tool_choice": request.tool_choice or "auto",
            "tools": function_tools.responses_tools(function_tools.chat_tools(request.tools)),
            "truncation": request.truncation or "disabled",
            "error": None,
            "incomplete_details": incomplete,
            "usage": _usage(usage),
            "system_fingerprint": fingerprint(version),
        }

    # --- create ---------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], caller: str):
        request = self._validate(body)
        messages = await self._messages(request, caller)
        chat_request = self._chat_request(request, messages)
        self.chat.require_engine()
        response_id = ID_PREFIX + uuid.uuid4().hex
        engine_body = self.chat.engine_body(chat_request, response_id, ID_PREFIX)
        engine_body.pop("n", None)
        if request.stream:
            answer = self._stream(request, messages, engine_body, response_id, caller)
        else:
            answer = self._complete(request, messages, engine_body, response_id, caller)
        return await self.chat.counted(answer, stream=request.stream)

    async def _complete(self, request, messages, engine_body, response_id, caller) -> JSONResponse:
        started = time.perf_counter()
        created = int(time.time())
        with engine_errors():
            result, version = await self.chat.engine.post("/v1/chat/completions", engine_body)
        choice = (result.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        calls = (choice.get("message") or {}).get("tool_calls") or None
        finish = choice.get("finish_reason")
        status = "incomplete" if finish == "length" else "completed"
        usage = result.get("usage")
        self.chat.count_tokens(usage)
        obj = self._object(request, response_id, created, status, text, usage, version, calls)
        self._finish(request, messages, obj, text, finish, usage, version, started, caller, calls)
        return JSONResponse(obj, headers={VERSION_HEADER: version, ID_HEADER: response_id})

    async def _stream(self, request, messages, engine_body, response_id, caller) -> StreamingResponse:
        started = time.perf_counter()
        with engine_errors():
            events = await self.chat.engine.stream("/v1/chat/completions", engine_body)
        first, version = events.first, events.version
        self.chat.metrics.ttft.observe(time.perf_counter() - started)
        relay = self._relay(request, messages, events, first, response_id, version, caller, started)
        headers = {
            VERSION_HEADER: version,
            ID_HEADER: response_id,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
        return StreamingResponse(relay, media_type="text/event-stream", headers=headers)

    async def _relay(
        self, request, messages, events, first, response_id, version, caller, started
    ) -> AsyncIterator[bytes]:
        """OpenAI's event sequence for one text output, from the engine's chat chunks."""
        created = int(time.time())
        msg_id = "msg_" + response_id.removeprefix(ID_PREFIX)
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            payload = {"type": kind, **fields, "sequence_number": seq}
            seq += 1
            return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        parts: list[str] = []
        finish = usage = None
        where: dict[str, Any] = {}  # the text message's place, once it is open
        items = 0  # output items opened so far

        def next_index() -> int:
            nonlocal items
            items += 1
            return items - 1

        def open_message() -> list[bytes]:
            where.update(item_id=msg_id, output_index=next_index(), content_index=0)
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            added = _message(msg_id, "", "in_progress")
            return [
                event("response.output_item.added", output_index=where["output_index"], item=added),
                event("response.content_part.added", **where, part=empty),
            ]

        # with tools the reply may be calls only: its message opens with its first text
        calls = function_tools.CallItems(response_id, event, next_index)
        try:
            snapshot = self._object(request, response_id, created, "in_progress", None, None, version)
            yield event("response.created", response=snapshot)
            yield event("response.in_progress", response=snapshot)
            for out in [] if request.tools else open_message():
                yield out
            chunk = first
            while chunk is not None:
                for choice in chunk.get("choices", []):
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        for out in [] if where else open_message():
                            yield out
                        parts.append(delta)
                        yield event("response.output_text.delta", **where, delta=delta, logprobs=[])
                    for out in calls.add((choice.get("delta") or {}).get("tool_calls") or []):
                        yield out
                    finish = choice.get("finish_reason") or finish
                if chunk.get("usage"):
                    usage = chunk["usage"]
                chunk = await anext(events, None)
            text = "".join(parts)
            status = "incomplete" if finish == "length" else "completed"
            for out in [] if where or calls.items else open_message():
                yield out  # a reply with neither text nor calls: an empty message, as without tools
            if where:
                done_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                yield event("response.output_text.done", **where, text=text, logprobs=[])
                yield event("response.content_part.done", **where, part=done_part)
                done = _message(msg_id, text, status)
                yield event("response.output_item.done", output_index=where["output_index"], item=done)
            for out in calls.finish():
                yield out
            tool_calls = calls.tool_calls() or None
            obj = self._object(request, response_id, created, status, text, usage, version, tool_calls)
            yield event(f"response.{status}", response=obj)
            self.chat.count_tokens(usage)
            self._finish(request, messages, obj, text, finish, usage, version, started, caller, tool_calls)
        except EngineUnavailable as exc:
            log.error("response stream %s broke: %s", response_id, exc)
            self.chat.metrics.errors.labels("engine_error").inc()
            yield event(
                "error", code="engine_error", message="the model engine stopped mid-stream", param=None
            )
        finally:
            self.chat.in_flight -= 1
            await events.aclose()

    def _finish(
        self, request, messages, obj, text, finish, usage, version, started, caller, calls=None
    ) -> None:
        """Remember and record a finished response (``store: true`` only)."""
        if not request.store:
            return
        response_id = obj["id"]
        self._recent[response_id] = StoredResponse(
            caller, messages, bool(request.instructions), text, obj, calls
        )
        while len(self._recent) > self.remember:
            self._recent.popitem(last=False)
        params = request.chat_fields()
        for name in ("instructions", "previous_response_id", "metadata", "truncation"):
            if getattr(request, name) is not None:
                params[name] = getattr(request, name)
        params["text"] = request.text_config()
        params["store"] = True
        record_interaction(
            self.chat.recorder,
            Exchange(
                completion_id=response_id,
                request={"model": request.model, "messages": messages, **params},
                choices=[{"index": 0, "message": reply_message(text, calls), "finish_reason": finish}],
                model_version=version,
                usage=usage,
                latency_ms=(time.perf_counter() - started) * 1000,
                caller=caller,
                stream=request.stream,
                created=obj["created_at"],
                kind="response",
            ),
        )

    # --- retrieve -------------------------------------------------------------------------

    async def find(self, response_id: str, caller: str) -> StoredResponse | None:
        """A stored response of this caller: from memory, else from the interaction log."""
        found = self._recent.get(response_id)
        if found is None and self.db is not None:
            found = await self._load(response_id)
        return found if found is not None and found.caller == caller else None

    async def _load(self, response_id: str) -> StoredResponse | None:
        stmt = select(InteractionRow).where(
            InteractionRow.id == response_id, InteractionRow.kind == "response"
        )
        try:
            async with self.db.sessions() as session:
                row = (await session.execute(stmt)).scalar_one_or_none()
        except SQLAlchemyError as exc:
            log.warning("response lookup failed: %s", type(exc).__name__)
            raise APIError(
                503, "response storage is unavailable right now; retry shortly", code="store_unavailable"
            ) from exc
        if row is None:
            return None
        params = dict(row.params or {})
        request = ResponseRequest.model_construct(
            model=row.model,
            input="",
            instructions=params.get("instructions"),
            previous_response_id=params.get("previous_response_id"),
            max_output_tokens=params.get("max_tokens"),
            temperature=params.get("temperature"),
            top_p=params.get("top_p"),
            text=None,
            metadata=params.get("metadata"),
            store=True,
            user=params.get("user"),
            truncation=params.get("truncation"),
            tools=function_tools.responses_tools(params.get("tools")) or None,
            tool_choice=function_tools.responses_tool_choice(params.get("tool_choice")),
            parallel_tool_calls=params.get("parallel_tool_calls"),
        )
        reply = next((c.get("message") or {} for c in row.choices or () if isinstance(c, dict)), {})
        calls = reply.get("tool_calls") or None
        status = "incomplete" if row.finish_reason == "length" else "completed"
        usage = {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens}
        created = int(row.created_at.timestamp())
        obj = self._object(request, row.id, created, status, row.response, usage, row.model_version, calls)
        obj["text"] = params.get("text") or obj["text"]
        obj["model"] = row.model
        return StoredResponse(
            row.caller, list(row.messages), bool(params.get("instructions")), row.response, obj, calls
        )

    async def retrieve(self, response_id: str, caller: str) -> JSONResponse:
        found = await self.find(response_id, caller)
        if found is None:
            raise APIError(
                404, f"no stored response {response_id!r}", param="response_id", code="response_not_found"
            )
        version = found.body["system_fingerprint"].removeprefix("perennial:")
        return JSONResponse(found.body, headers={VERSION_HEADER: version})


def start(app: FastAPI) -> None:
    """The lifespan's responses step (after the chat service): ``app.state.responses``."""
    app.state.responses = ResponsesService(app.state.chat, app.state.db)


# The routes' view of the service the lifespan keeps on app.state.
Responses = Annotated[ResponsesService, Depends(state("responses"))]
