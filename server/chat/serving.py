"""The chat service: validate, forward to the serving engine, stamp id and model version, record.

Every completion leaves with a gateway-made id (``chatcmpl-<32 hex>``, also given to vLLM as its
request id) and the version of the weights that produced it, in ``system_fingerprint``
(``perennial:<version>``) and the ``x-perennial-model-version`` header. The version is read when
the engine's first output arrives: a hot swap pauses the engine until in-flight requests finish
and sets the new version before resuming, so that moment identifies the weights exactly.

Each finished completion is handed to the interaction recorder (off the request path).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from engine.client import EngineHTTPError, EngineUnavailable
from engine.runtime import EngineRuntime
from server.chat.protocol import ChatCompletionRequest
from server.errors import APIError, envelope, validation_error
from server.metrics import GatewayMetrics
from server.settings import Settings

log = logging.getLogger(__name__)

VERSION_HEADER = "x-perennial-model-version"
ID_HEADER = "x-perennial-completion-id"


@dataclass
class ServedModel:
    """What the gateway serves: the public model id and the weights version now loaded."""

    name: str
    version: str
    created: int = field(default_factory=lambda: int(time.time()))


def fingerprint(version: str) -> str:
    """``system_fingerprint`` of a reply: the weights version that produced it."""
    return f"perennial:{version}"


@dataclass
class Interaction:
    """One finished chat completion, as the recorder receives it."""

    completion_id: str
    request: dict[str, Any]
    choices: list[dict[str, Any]]
    model_version: str
    usage: dict[str, Any] | None
    latency_ms: float
    caller: str
    stream: bool
    created: int


class Recorder(Protocol):
    def record(self, interaction: Interaction) -> None:
        """Accept a finished interaction; must not block the event loop."""


class NullRecorder:
    def record(self, interaction: Interaction) -> None:
        return None


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 in the OpenAI envelope."""
    if not raw:
        raise APIError(400, "request body is empty; expected a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"invalid JSON in request body: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return body


def engine_error(exc: EngineHTTPError) -> APIError:
    """Pass the engine's 4xx through (its message names the problem); hide its 5xx."""
    detail = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
    if isinstance(detail, str):
        detail = {"message": detail}
    if 400 <= exc.status < 500:
        status = 400 if exc.status == 422 else exc.status
        return APIError(
            status,
            str(detail.get("message") or "the engine refused the request"),
            param=detail.get("param"),
            code="invalid_value" if status == 400 else None,
        )
    log.error("engine error %s: %s", exc.status, str(detail.get("message"))[:300])
    return APIError(502, "the model engine failed on this request", code="engine_error")


class ChatService:
    """Turns a validated chat request into an engine call and a stamped OpenAI response."""

    def __init__(
        self,
        settings: Settings,
        engine: EngineRuntime,
        served: ServedModel,
        metrics: GatewayMetrics,
        recorder: Recorder,
    ):
        self.settings = settings
        self.engine = engine
        self.served = served
        self.metrics = metrics
        self.recorder = recorder
        # Chats between arrival and their last byte: the embedded learner yields to them.
        self.in_flight = 0

    def validate(self, body: dict[str, Any]) -> ChatCompletionRequest:
        try:
            request = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        s = self.settings
        if request.model != self.served.name:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist; this server serves '{self.served.name}'.",
                param="model",
                code="model_not_found",
            )
        if len(request.messages) > s.max_messages:
            raise APIError(400, f"messages: at most {s.max_messages}", param="messages")
        if request.requested_tokens and request.requested_tokens > s.max_completion_tokens:
            param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise APIError(
                400,
                f"{param}: at most {s.max_completion_tokens}",
                param=param,
                code="invalid_value",
            )
        if request.n and request.n > s.max_n:
            raise APIError(400, f"n: at most {s.max_n}", param="n", code="invalid_value")
        return request

    def _engine_body(self, request: ChatCompletionRequest, completion_id: str) -> dict[str, Any]:
        body = request.model_dump(exclude_unset=True, exclude_none=True)
        body["model"] = self.served.name
        body["request_id"] = completion_id.removeprefix("chatcmpl-")
        if request.stream:
            # Usage is always asked of the engine (metrics and the interaction log); the client
            # only sees the usage chunk if it asked for it.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        return body

    def _require_engine(self) -> None:
        if not self.engine.ready:
            raise APIError(
                503,
                "the model engine is not available right now; retry shortly",
                code="engine_unavailable",
                headers={"Retry-After": "5"},
            )

    async def complete(self, body: dict[str, Any], caller: str):
        request = self.validate(body)
        self._require_engine()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        engine_body = self._engine_body(request, completion_id)
        self.in_flight += 1
        streaming = False
        try:
            if request.stream:
                response = await self._stream(request, engine_body, completion_id, caller)
                streaming = True  # the relay counts the chat out when its stream ends
                return response
            return await self._complete(request, engine_body, completion_id, caller)
        finally:
            if not streaming:
                self.in_flight -= 1

    async def _complete(self, request, engine_body, completion_id, caller) -> JSONResponse:
        started = time.perf_counter()
        try:
            result = await self.engine.client.chat(engine_body)
        except EngineUnavailable as exc:
            raise _unavailable(exc) from exc
        except EngineHTTPError as exc:
            raise engine_error(exc) from exc
        version = self.served.version
        result["id"] = completion_id
        result["model"] = self.served.name
        result["system_fingerprint"] = fingerprint(version)
        usage = result.get("usage")
        self._count_tokens(usage)
        self._record(request, completion_id, result.get("choices", []), version, usage, started, caller)
        return JSONResponse(result, headers={VERSION_HEADER: version, ID_HEADER: completion_id})

    async def _stream(self, request, engine_body, completion_id, caller) -> StreamingResponse:
        started = time.perf_counter()
        try:
            events = await self.engine.client.chat_stream(engine_body)
            first = await anext(events, None)
        except EngineUnavailable as exc:
            raise _unavailable(exc) from exc
        except EngineHTTPError as exc:
            raise engine_error(exc) from exc
        self.metrics.ttft.observe(time.perf_counter() - started)
        version = self.served.version
        want_usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            self._relay(request, events, first, completion_id, version, want_usage, caller, started),
            media_type="text/event-stream",
            headers={
                VERSION_HEADER: version,
                ID_HEADER: completion_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )

    async def _relay(
        self,
        request,
        events: AsyncIterator[dict],
        first: dict | None,
        completion_id: str,
        version: str,
        want_usage: bool,
        caller: str,
        started: float,
    ) -> AsyncIterator[bytes]:
        """Re-emit the engine's events with our id and version, assembling the reply."""
        texts: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        usage = None
        completed = False
        try:
            event = first
            while event is not None:
                event["id"] = completion_id
                event["model"] = self.served.name
                event["system_fingerprint"] = fingerprint(version)
                for choice in event.get("choices", []):
                    idx = choice.get("index", 0)
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        texts.setdefault(idx, []).append(content)
                    if choice.get("finish_reason"):
                        finish[idx] = choice["finish_reason"]
                if event.get("usage") and not event.get("choices"):
                    usage = event["usage"]
                    if want_usage:
                        yield _sse(event)
                else:
                    if not want_usage:
                        event.pop("usage", None)
                    yield _sse(event)
                event = await anext(events, None)
            completed = True
            yield b"data: [DONE]\n\n"
        except EngineUnavailable as exc:
            log.error("stream %s broke: %s", completion_id, exc)
            self.metrics.errors.labels("engine_error").inc()
            yield _sse(envelope("the model engine stopped mid-stream", "engine_error"))
        finally:
            self.in_flight -= 1
            await events.aclose()
            if completed:
                self._count_tokens(usage)
                choices = [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "".join(parts)},
                        "finish_reason": finish.get(i),
                    }
                    for i, parts in sorted(texts.items())
                ]
                self._record(request, completion_id, choices, version, usage, started, caller)

    def _count_tokens(self, usage: dict | None) -> None:
        if usage:
            self.metrics.tokens.labels("prompt").inc(usage.get("prompt_tokens") or 0)
            self.metrics.tokens.labels("completion").inc(usage.get("completion_tokens") or 0)

    def _record(self, request, completion_id, choices, version, usage, started, caller) -> None:
        try:
            self.recorder.record(
                Interaction(
                    completion_id=completion_id,
                    request=request.model_dump(exclude_unset=True, exclude_none=True),
                    choices=choices,
                    model_version=version,
                    usage=usage,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    caller=caller,
                    stream=request.stream,
                    created=int(time.time()),
                )
            )
        except Exception:  # the reply must not fail because logging did
            log.exception("recording interaction %s failed", completion_id)


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _unavailable(exc: Exception) -> APIError:
    log.warning("engine unavailable: %s", exc)
    return APIError(
        503,
        "the model engine is not available right now; retry shortly",
        code="engine_unavailable",
        headers={"Retry-After": "5"},
    )
