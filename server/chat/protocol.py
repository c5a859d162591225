"""OpenAI wire models of the gateway, with their limits declared where the fields are.

Requests are validated here before they reach the engine, so bad values come back as a 400
in the OpenAI error envelope naming the offending parameter. Only the fields modelled here
reach the engine (an allow-list, docs/openai.md): OpenAI's, and the vLLM extras worth serving
(``top_k``, ``min_p``, ``structured_outputs``...), each with its bounds. A few OpenAI fields
that change nothing here are accepted and dropped (``DROPPED``); any other field is refused,
so no engine-internal or future vLLM field reaches the engine unbounded. Grammars, regexes and
JSON schemas for constrained decoding are bounded in size and depth (:mod:`evals.bounded`).

Each model's JSON Schema (in the OpenAPI document) says what its validators check, through its
``json_schema_extra``; the limits the settings set are added by the :func:`patch_schema` hooks at
the end.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from evals.bounded import MAX_PATTERN_CHARS, Refused, check_schema, compile_regex
from server.openapi import maximum, needs_schema, needs_true, patch_schema
from server.settings import Settings

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_TOP_LOGPROBS = 20
MAX_STOP_TOKEN_IDS = 16
MAX_BAD_WORDS = 16
MAX_CHOICES = 64  # structured_outputs.choice
MAX_GRAMMAR_CHARS = 20_000
MAX_TOOLS = 128
COMPLETION_DEFAULT_TOKENS = 16  # max_tokens of /v1/completions when not given, as OpenAI's

# OpenAI fields that change nothing on this server: accepted (clients send them) and dropped.
DROPPED = frozenset({"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"})


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


def bounded_schema(schema: Any, param: str) -> None:
    """Refuse a JSON schema for constrained decoding that is too large, too deep, refers to
    anything remote or is not a schema (:func:`evals.bounded.check_schema`)."""
    if not isinstance(schema, dict):
        raise ParamError(param, f"{param}: a JSON schema must be an object")
    try:
        check_schema(schema)
    except (Refused, RecursionError) as exc:
        raise ParamError(param, f"{param}: {str(exc) or 'schema nested too deep'}") from None


def bounded_regex(pattern: str | None, param: str) -> None:
    """Refuse a regex that is not linear-time (RE2) or over ``MAX_PATTERN_CHARS``."""
    if pattern is not None:
        try:
            compile_regex(pattern)
        except Refused as exc:
            raise ParamError(param, f"{param}: {exc}") from None


class ResponseFormat(BaseModel):
    # _schema_given, in the schema
    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: needs_schema(s, "json_schema"))

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and not self.json_schema:
            raise ValueError("type 'json_schema' needs a json_schema object")
        if self.type == "json_schema" and "schema" in self.json_schema:
            bounded_schema(self.json_schema["schema"], "response_format")
        return self


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = Field(None, max_length=4096)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # a required or named tool choice makes the engine compile these into a grammar
        if value is not None:
            bounded_schema(value, "tools")
        return value


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


STRUCTURED_KINDS = ("json", "regex", "choice", "grammar", "json_object")


def _one_kind(schema: dict[str, Any]) -> None:
    # StructuredOutputs._bounded: exactly one kind of constraint
    schema["oneOf"] = [{"required": [kind]} for kind in STRUCTURED_KINDS]


class StructuredOutputs(BaseModel):
    """vLLM's constrained decoding (exactly one of json, regex, choice, grammar, json_object),
    bounded."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_kind)

    # the kinds are not nullable: the engine counts a null as not given
    json_: dict[str, Any] | str = Field(None, alias="json")
    regex: str = Field(None, max_length=MAX_PATTERN_CHARS)
    choice: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        None, min_length=1, max_length=MAX_CHOICES
    )
    grammar: str = Field(None, max_length=MAX_GRAMMAR_CHARS)
    json_object: bool = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = Field(None, max_length=MAX_STOP_CHARS)

    @model_validator(mode="after")
    def _bounded(self) -> StructuredOutputs:
        given = {"json_" if kind == "json" else kind for kind in STRUCTURED_KINDS} & self.model_fields_set
        if len(given) != 1:
            raise ParamError(
                "structured_outputs", f"structured_outputs: exactly one of {', '.join(STRUCTURED_KINDS)}"
            )
        schema = self.json_
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except (ValueError, RecursionError):
                raise ParamError("structured_outputs.json", "structured_outputs.json: not JSON") from None
        if schema is not None:
            bounded_schema(schema, "structured_outputs.json")
        bounded_regex(self.regex, "structured_outputs.regex")
        bounded_regex(self.whitespace_pattern, "structured_outputs.whitespace_pattern")
        return self


def _sampling_rules(schema: dict[str, Any]) -> None:
    """SamplingRequest's validators: stop limits, logit_bias ids and range, stream_options
    needs stream (unknown fields: ``additionalProperties: false``, from ``extra="forbid"``)."""
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


class SamplingRequest(BaseModel):
    """What chat and text completions share: sampling, stopping, streaming, limits, and the
    vLLM extras both forward. A field not declared here or in a subclass is refused."""

    model_config = ConfigDict(extra="forbid")

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
    # OpenAI's, dropped (DROPPED)
    store: bool | None = Field(None, description="Accepted and ignored (every reply is logged).")
    metadata: dict[str, str] | None = Field(None, description="Accepted and ignored.")
    service_tier: str | None = Field(None, max_length=64, description="Accepted and ignored.")
    prompt_cache_key: str | None = Field(None, max_length=256, description="Accepted and ignored.")
    safety_identifier: str | None = Field(None, max_length=256, description="Accepted and ignored.")
    # vLLM's sampling extras, forwarded
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    min_tokens: int | None = Field(None, ge=0, description="At most the request's max tokens.")
    ignore_eos: bool | None = Field(None, description="Allowed; the token budget still holds.")
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=MAX_STOP_TOKEN_IDS)
    include_stop_str_in_output: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    bad_words: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] | None = Field(
        None, max_length=MAX_BAD_WORDS
    )
    add_special_tokens: bool | None = None
    return_tokens_as_token_ids: bool | None = None
    structured_outputs: StructuredOutputs | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        for name in data if isinstance(data, dict) else ():
            if name not in cls.model_fields:
                name = str(name)[:64]
                raise ParamError(name, f"{name}: unsupported parameter (docs/openai.md lists the accepted)")
        return data

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
        return self

    # The max_tokens the engine is sent, settled by ChatService.budget (never from the client).
    _send_tokens: int | None = PrivateAttr(None)

    @property
    def requested_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def send_tokens(self) -> int | None:
        return self._send_tokens

    @send_tokens.setter
    def send_tokens(self, value: int) -> None:
        self._send_tokens = value


def _chat_rules(schema: dict[str, Any]) -> None:
    # SamplingRequest's rules, and ChatCompletionRequest's own: top_logprobs needs logprobs.
    schema["allOf"] = [needs_true("top_logprobs", "logprobs")]
    _sampling_rules(schema)


class ChatCompletionRequest(SamplingRequest):
    """``POST /v1/chat/completions``. ``tools`` and ``tool_choice`` pass to the engine, which
    validates them (and renders the tools with the chat template)."""

    model_config = ConfigDict(json_schema_extra=_chat_rules)

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # vLLM's chat extras, forwarded
    echo: bool | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None

    @model_validator(mode="after")
    def _consistency(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ParamError("top_logprobs", "top_logprobs needs logprobs: true")
        named = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None
        if named and named not in {tool.function.name for tool in self.tools or ()}:
            raise ParamError("tool_choice", f"tool_choice: no tool named {named!r} in tools")
        if self.tool_choice == "required" and not self.tools:
            raise ParamError("tool_choice", "tool_choice: 'required' needs tools")
        return self

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


TokenIds = list[Annotated[int, Field(ge=0)]]


def prompts_of(prompt: str | list) -> list:
    """A completion's ``prompt`` as the list of prompts it holds (one text or token-id list each)."""
    return [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else prompt


def _completion_rules(schema: dict[str, Any]) -> None:
    _sampling_rules(schema)
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
    max_tokens: int | None = Field(COMPLETION_DEFAULT_TOKENS, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # vLLM serves neither (best_of was removed from it; suffix needs a fill-in-the-middle model)
    suffix: None = Field(None, description="Not supported: must be null or left out.")
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1 (vLLM dropped best_of).")
    # (prompt_embeds, tensors the engine would unpickle, is refused as every unmodelled field)

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
    def requested_tokens(self) -> int | None:
        # unset: OpenAI's default of 16, lowered to the gateway's limits (ChatService.budget)
        return self.max_tokens if "max_tokens" in self.model_fields_set else None

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
    tool_calling: dict[str, Any] | None = None  # parser, template and where they came from


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
