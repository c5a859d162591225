"""OpenAI wire models of the gateway, with their limits declared where the fields are.

Requests are validated here before they reach the engine, so bad values come back as a 400
in the OpenAI error envelope naming the offending parameter. Parameters we do not model
(vLLM's extras such as ``top_k``, ``min_p``, ``repetition_penalty``) pass through to the
engine, which validates them itself; a few engine-internal ones are refused (see
``ENGINE_INTERNAL_FIELDS``).

Each model's JSON Schema (in the OpenAPI document) says what its validators check, through its
``json_schema_extra``; the limits the settings set are added by the :func:`patch_schema` hooks at
the end.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.openapi import maximum, needs_schema, needs_true, patch_schema
from server.settings import Settings

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_TOP_LOGPROBS = 20

# Fields a client must not set: they control engine internals or our own bookkeeping.
ENGINE_INTERNAL_FIELDS = frozenset(
    {"request_id", "kv_transfer_params", "ec_transfer_params", "priority", "vllm_xargs"}
)


class ParamError(ValueError):
    """A validator's error that names the request parameter at fault (see errors.py)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def _content_rule(schema: dict[str, Any]) -> None:
    # ChatMessage._content_required: only an assistant message may leave content out or null.
    schema["anyOf"] = [
        {"properties": {"role": {"const": "assistant"}}},
        {"required": ["content"], "properties": {"content": {"type": ["string", "array"]}}},
    ]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_content_rule)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ResponseFormat(BaseModel):
    # _schema_given, in the schema
    model_config = ConfigDict(extra="allow", json_schema_extra=lambda s: needs_schema(s, "json_schema"))

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and not self.json_schema:
            raise ValueError("type 'json_schema' needs a json_schema object")
        return self


def _sampling_rules(schema: dict[str, Any], refused: frozenset[str]) -> None:
    """SamplingRequest's validators: stop limits, logit_bias ids and range, stream_options
    needs stream, engine-internal fields refused."""
    props = schema["properties"]
    stop = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
    props["stop"]["anyOf"] = [
        stop,
        {"type": "array", "items": stop, "maxItems": MAX_STOP_SEQUENCES},
        {"type": "null"},
    ]
    props["logit_bias"]["anyOf"][0].update(
        propertyNames={"pattern": "^-*[0-9]+$"},
        additionalProperties={"type": "number", "minimum": -100, "maximum": 100},
    )
    schema.setdefault("allOf", []).append(needs_true("stream_options", "stream"))
    schema["not"] = {"anyOf": [{"required": [name]} for name in sorted(refused)]}


class SamplingRequest(BaseModel):
    """What chat and text completions share: sampling, stopping, streaming, limits."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(..., min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)

    # Fields of this endpoint a client must not set (see ENGINE_INTERNAL_FIELDS).
    refused: ClassVar[frozenset[str]] = ENGINE_INTERNAL_FIELDS

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(len(s) > MAX_STOP_CHARS or not s for s in stops):
            raise ValueError(f"stop sequences must be 1..{MAX_STOP_CHARS} characters")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.lstrip("-").isdigit() or not -100 <= bias <= 100:
                raise ValueError("logit_bias maps token ids to values in [-100, 100]")
        return value

    @model_validator(mode="after")
    def _shared_consistency(self) -> SamplingRequest:
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options", "stream_options is only allowed with stream: true")
        internal = self.refused & set(self.model_extra or {})
        if internal:
            name = sorted(internal)[0]
            raise ParamError(name, f"unsupported parameter: {name}")
        return self

    @property
    def requested_tokens(self) -> int | None:
        return self.max_tokens


def _chat_rules(schema: dict[str, Any], cls: type[SamplingRequest]) -> None:
    # SamplingRequest's rules, and ChatCompletionRequest's own: top_logprobs needs logprobs.
    schema["allOf"] = [needs_true("top_logprobs", "logprobs")]
    _sampling_rules(schema, cls.refused)


class ChatCompletionRequest(SamplingRequest):
    """``POST /v1/chat/completions``. Unmodelled fields (``tools``, ``tool_choice``, vLLM's
    sampling extras) pass through to the engine, which validates them."""

    model_config = ConfigDict(json_schema_extra=_chat_rules)

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _consistency(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ParamError("top_logprobs", "top_logprobs needs logprobs: true")
        return self

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


TokenIds = list[Annotated[int, Field(ge=0)]]


def prompts_of(prompt: str | list) -> list:
    """A completion's ``prompt`` as the list of prompts it holds (one text or token-id list each)."""
    return [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else prompt


def _completion_rules(schema: dict[str, Any], cls: type[SamplingRequest]) -> None:
    _sampling_rules(schema, cls.refused)
    # max_tokens 0 only with echo: true
    zero = {"required": ["max_tokens"], "properties": {"max_tokens": {"const": 0}}}
    schema["allOf"].append(
        {"anyOf": [{"not": zero}, {"required": ["echo"], "properties": {"echo": {"const": True}}}]}
    )
    # an empty prompt, or an empty one in a batch, is refused
    for variant in schema["properties"]["prompt"]["anyOf"]:
        if variant.get("type") == "string":
            variant["minLength"] = 1
        elif variant.get("type") == "array":
            variant["minItems"] = 1
            items = variant.get("items", {})
            if items.get("type") == "string":
                items["minLength"] = 1
            elif items.get("type") == "array":
                items["minItems"] = 1


class CompletionRequest(SamplingRequest):
    """``POST /v1/completions``: a raw prompt (no chat template), as text or token ids.

    ``prompt`` is a string, a list of strings, a list of token ids, or a list of token-id
    lists (a batch; lm-evaluation-harness sends these). ``echo`` with ``logprobs`` returns the
    prompt's own token log-probabilities, which is how likelihood-scored evaluations read a
    model. ``max_tokens`` defaults to 16, as in OpenAI's API.
    """

    model_config = ConfigDict(json_schema_extra=_completion_rules)

    prompt: str | list[str] | TokenIds | list[TokenIds]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # vLLM serves neither (best_of was removed from it; suffix needs a fill-in-the-middle model)
    suffix: None = Field(None, description="Not supported: must be null or left out.")
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1 (vLLM dropped best_of).")

    # prompt_embeds are tensors the engine unpickles: never from a client.
    refused: ClassVar[frozenset[str]] = ENGINE_INTERNAL_FIELDS | {"prompt_embeds"}

    @field_validator("prompt")
    @classmethod
    def _prompt_given(cls, value):
        prompts = prompts_of(value)
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prompt must not be empty")
        return value

    @model_validator(mode="after")
    def _echo_or_tokens(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ParamError("max_tokens", "max_tokens: 0 is only allowed with echo: true")
        return self

    @property
    def prompt_count(self) -> int:
        return len(prompts_of(self.prompt))


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "perennial"
    version: str
    root: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- limits the settings set, checked at request time (server.chat.service) ------------------


@patch_schema(ChatCompletionRequest)
def _chat_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    maximum(props["max_tokens"], "maximum", settings.max_completion_tokens)
    maximum(props["max_completion_tokens"], "maximum", settings.max_completion_tokens)
    maximum(props["n"], "maximum", settings.max_n)
    props["messages"]["maxItems"] = settings.max_messages


@patch_schema(CompletionRequest)
def _completion_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    maximum(props["max_tokens"], "maximum", settings.max_completion_tokens)
    maximum(props["n"], "maximum", settings.max_n)
    # a list of prompts (strings or token-id lists) holds at most max_prompts
    for variant in props["prompt"]["anyOf"]:
        if variant.get("type") == "array" and variant.get("items", {}).get("type") != "integer":
            variant["maxItems"] = settings.max_prompts
    tool_calling: dict[str, Any] | None = None  # parser, template and where they came from
