"""Chat and text completions: validate, forward to the serving engine, stamp id and version, record.

Both go the same way (a :class:`Flavor` says what differs). Every completion leaves with a
gateway-made id (``chatcmpl-<32 hex>`` for chat, ``cmpl-<32 hex>`` for text completions, also
given to vLLM as its request id) and the version of the weights that produced it, in ``system_fingerprint``
(``perennial:<version>``) and the ``x-perennial-model-version`` header: the version of the replica
that answered, read while the request is still counted on it (``engine.replicas``). A rolling swap
changes a replica's weights only once nothing is outstanding on it (a lone replica: while its
engine is paused, after its in-flight requests finished), so that version identifies the weights
exactly, also while a rolling swap has both versions serving.

Each finished completion is handed to the interaction recorder (off the request path).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from engine.client import EngineHTTPError, EngineUnavailable
from engine.replicas import ReplicaSet
from server.chat.protocol import (
    COMPLETION_DEFAULT_TOKENS,
    DROPPED,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
)
from server.deps import state
from server.errors import APIError, envelope, validation_error
from server.metrics import GatewayMetrics
from server.quotas import BudgetError, tokens_to_send
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
    tool_calling: dict[str, Any] | None = None  # engine.chat_format.ChatFormat.describe()


def fingerprint(version: str) -> str:
    """``system_fingerprint`` of a reply: the weights version that produced it."""
    return f"perennial:{version}"


@dataclass
class Exchange:
    """One finished chat completion, text completion or response, as the recorder receives it.

    (The recorder stores it as a ``store.models.Interaction`` row; clients read it back as
    ``clients.models.Interaction``.)"""

    completion_id: str
    request: dict[str, Any]
    choices: list[dict[str, Any]]
    model_version: str
    usage: dict[str, Any] | None
    latency_ms: float
    caller: str
    stream: bool
    created: int
    kind: str = "chat"  # chat, completion or response


class Recorder(Protocol):
    def record(self, interaction: Exchange) -> None:
        """Accept a finished interaction; must not block the event loop."""


class NullRecorder:
    def record(self, interaction: Exchange) -> None:
        return None


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 in the OpenAI envelope."""
    if not raw:
        raise APIError(400, "request body is empty; expected a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"invalid JSON in request body: {exc}", code="invalid_json") from exc
    except RecursionError as exc:  # "[[[[..." a hundred thousand deep
        raise APIError(400, "request body nested too deep", code="invalid_json") from exc
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


@dataclass(frozen=True)
class Flavor:
    """What differs between chat and text completions on their way through the gateway."""

    name: str  # "chat" or "completion": metrics label and interaction kind
    id_prefix: str  # chatcmpl- / cmpl-
    request_model: type[SamplingRequest]
    engine_path: str  # the engine's route

    def delta(self, choice: dict[str, Any]) -> dict[str, Any]:
        """The increment a stream event's choice carries (chat: ``delta``; completion: ``text``)."""
        if self.name == "chat":
            return choice.get("delta") or {}
        return {"content": choice.get("text")}

    def message(self, choice: dict[str, Any]) -> dict[str, Any]:
        """The assistant message of a finished (non-streamed) choice."""
        if self.name == "chat":
            return choice.get("message") or {}
        return {"role": "assistant", "content": choice.get("text") or ""}


CHAT = Flavor("chat", "chatcmpl-", ChatCompletionRequest, "/v1/chat/completions")
COMPLETION = Flavor("completion", "cmpl-", CompletionRequest, "/v1/completions")


class _Reply:
    """A streamed reply assembled choice by choice: text, tool calls and finish reason."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.tools: dict[int, dict[int, dict[str, Any]]] = {}
        self.finish: dict[int, str | None] = {}

    def add(self, index: int, delta: dict[str, Any], finish_reason: str | None) -> None:
        if delta.get("content"):
            self.texts.setdefault(index, []).append(delta["content"])
        for call in delta.get("tool_calls") or ():
            slot = self.tools.setdefault(index, {}).setdefault(
                call.get("index", 0),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            slot["id"] = call.get("id") or slot["id"]
            function = call.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""
        if finish_reason:
            self.finish[index] = finish_reason

    def choices(self) -> list[dict[str, Any]]:
        out = []
        for i in sorted(self.texts.keys() | self.tools.keys() | self.finish.keys()):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self.texts.get(i, []))}
            if i in self.tools:
                message["tool_calls"] = [call for _, call in sorted(self.tools[i].items())]
            out.append({"index": i, "message": message, "finish_reason": self.finish.get(i)})
        return out


@contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's failures as the gateway answers them: away -> 503, its 4xx passed on, its 5xx -> 502."""
    try:
        yield
    except EngineUnavailable as exc:
        raise _unavailable(exc) from exc
    except EngineHTTPError as exc:
        raise engine_error(exc) from exc


class ChatService:
    """Turns a validated chat or text completion request into an engine call and a stamped reply."""

    def __init__(
        self,
        settings: Settings,
        engine: ReplicaSet,
        served: ServedModel,
        metrics: GatewayMetrics,
        recorder: Recorder,
    ):
        self.settings = settings
        self.engine = engine
        self.served = served
        self.metrics = metrics
        self.recorder = recorder
        # Requests between arrival and their last byte: the embedded learner yields to them.
        self.in_flight = 0

    def validate(self, body: dict[str, Any], flavor: Flavor = CHAT) -> SamplingRequest:
        try:
            request = flavor.request_model.model_validate(body)
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
        if isinstance(request, ChatCompletionRequest) and len(request.messages) > s.max_messages:
            raise APIError(400, f"messages: at most {s.max_messages}", param="messages")
        if isinstance(request, CompletionRequest) and request.prompt_count > s.max_prompts:
            raise APIError(400, f"prompt: at most {s.max_prompts} prompts", param="prompt")
        if request.n and request.n > s.max_n:
            raise APIError(400, f"n: at most {s.max_n}", param="n", code="invalid_value")
        self.budget(request)
        return request

    def budget(self, request: SamplingRequest) -> None:
        """Settle the ``max_tokens`` the engine gets (always one: :func:`tokens_to_send`)."""
        s = self.settings
        prompts = request.prompt_count if isinstance(request, CompletionRequest) else 1
        chat_limit = getattr(request, "max_completion_tokens", None)
        try:
            request.send_tokens = tokens_to_send(
                request.requested_tokens,
                choices=(request.n or 1) * prompts,
                cap=s.max_completion_tokens,
                budget=s.max_request_tokens,
                default=COMPLETION_DEFAULT_TOKENS if isinstance(request, CompletionRequest) else None,
                token_param="max_completion_tokens" if chat_limit else "max_tokens",
            )
        except BudgetError as exc:
            raise APIError(400, str(exc), param=exc.param, code="invalid_value") from None
        if request.min_tokens and request.min_tokens > request.send_tokens:
            raise APIError(
                400,
                f"min_tokens: at most the max tokens of the request ({request.send_tokens})",
                param="min_tokens",
                code="invalid_value",
            )

    def engine_body(self, request: SamplingRequest, completion_id: str, prefix: str) -> dict[str, Any]:
        body = request.model_dump(exclude_unset=True, exclude_none=True, by_alias=True, exclude=DROPPED)
        body["model"] = self.served.name
        body["request_id"] = completion_id.removeprefix(prefix)
        body.pop("max_completion_tokens", None)
        body["max_tokens"] = request.send_tokens  # always: the engine's default is the context
        if request.stream:
            # Usage is always asked of the engine (metrics and the interaction log); the client
            # only sees the usage chunk if it asked for it.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        return body

    def require_engine(self) -> None:
        if not self.engine.ready:
            raise APIError(
                503,
                "the model engine is not available right now; retry shortly",
                code="engine_unavailable",
                headers={"Retry-After": "5"},
            )

    async def complete(self, body: dict[str, Any], caller: str, flavor: Flavor = CHAT):
        """Answer one request of ``flavor`` (chat or text completion), streamed or not."""
        request = self.validate(body, flavor)
        self.require_engine()
        completion_id = f"{flavor.id_prefix}{uuid.uuid4().hex}"
        engine_body = self.engine_body(request, completion_id, flavor.id_prefix)
        if request.stream:
            return await self.counted(
                self._stream(flavor, request, engine_body, completion_id, caller), stream=True
            )
        return await self.counted(
            self._complete(flavor, request, engine_body, completion_id, caller), stream=False
        )

    async def counted(self, answer: Awaitable[Response], *, stream: bool) -> Response:
        """Await ``answer`` with the request counted in flight. A stream stays counted until its
        relay ends (the relay counts it out); anything else, and a stream that failed to start,
        is counted out here."""
        self.in_flight += 1
        try:
            response = await answer
        except BaseException:
            self.in_flight -= 1
            raise
        if not stream:
            self.in_flight -= 1
        return response

    async def _complete(self, flavor, request, engine_body, completion_id, caller) -> JSONResponse:
        started = time.perf_counter()
        with engine_errors():
            result, version = await self.engine.post(flavor.engine_path, engine_body)
        result["id"] = completion_id
        result["model"] = self.served.name
        result["system_fingerprint"] = fingerprint(version)
        usage = result.get("usage")
        self.count_tokens(usage)
        choices = [
            {
                "index": c.get("index", 0),
                "message": flavor.message(c),
                "finish_reason": c.get("finish_reason"),
            }
            for c in result.get("choices", [])
        ]
        self._record(flavor, request, completion_id, choices, version, usage, started, caller)
        return JSONResponse(result, headers={VERSION_HEADER: version, ID_HEADER: completion_id})

    async def _stream(self, flavor, request, engine_body, completion_id, caller) -> StreamingResponse:
        started = time.perf_counter()
        with engine_errors():
            events = await self.engine.stream(flavor.engine_path, engine_body)
        first, version = events.first, events.version
        self.metrics.ttft.observe(time.perf_counter() - started)
        want_usage = bool(request.stream_options and request.stream_options.include_usage)
        relay = self._relay(
            flavor, request, events, first, completion_id, version, want_usage, caller, started
        )
        return StreamingResponse(
            relay,
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
        flavor: Flavor,
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
        reply = _Reply()
        usage = None
        completed = False
        try:
            event = first
            while event is not None:
                event["id"] = completion_id
                event["model"] = self.served.name
                event["system_fingerprint"] = fingerprint(version)
                for choice in event.get("choices", []):
                    reply.add(choice.get("index", 0), flavor.delta(choice), choice.get("finish_reason"))
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
                self.count_tokens(usage)
                self._record(flavor, request, completion_id, reply.choices(), version, usage, started, caller)

    def count_tokens(self, usage: dict | None) -> None:
        if usage:
            self.metrics.tokens.labels("prompt").inc(usage.get("prompt_tokens") or 0)
            self.metrics.tokens.labels("completion").inc(usage.get("completion_tokens") or 0)

    def _record(self, flavor, request, completion_id, choices, version, usage, started, caller) -> None:
        if isinstance(request, CompletionRequest) and request.echo and isinstance(request.prompt, str):
            for choice in choices:  # the log keeps what the model wrote, not the echoed prompt
                choice["message"]["content"] = choice["message"]["content"].removeprefix(request.prompt)
        record_interaction(
            self.recorder,
            Exchange(
                completion_id=completion_id,
                request=request.model_dump(exclude_unset=True, exclude_none=True),
                choices=choices,
                model_version=version,
                usage=usage,
                latency_ms=(time.perf_counter() - started) * 1000,
                caller=caller,
                stream=request.stream,
                created=int(time.time()),
                kind=flavor.name,
            ),
        )


def record_interaction(recorder: Recorder, interaction: Exchange) -> None:
    """Hand a finished interaction to the recorder; a failure is logged, never raised."""
    try:
        recorder.record(interaction)
    except Exception:  # the reply must not fail because logging did
        log.exception("recording interaction %s failed", interaction.completion_id)


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


# The routes' view of what the lifespan keeps on app.state (see server.chat.start).
Chat = Annotated[ChatService, Depends(state("chat"))]
Served = Annotated[ServedModel, Depends(state("served"))]
