"""Wire models of ``POST /v1/responses`` and their translation to a chat request.

The gateway serves the Responses API for text in and text out: ``input`` (a string or a list
of message items), ``instructions``, ``previous_response_id``, ``text.format`` (plain text,
JSON object or JSON schema), sampling and token limits, ``store`` and ``metadata``, streamed
or not, and function tools (``tools``, ``tool_choice``, ``parallel_tool_calls``,
``function_call`` / ``function_call_output`` items: :mod:`server.responses.tools`). Features a
plain chat model cannot serve here (hosted tools, background mode, conversations, images) are
refused with a 400 naming the parameter, never silently dropped. Fields we do not model are accepted and ignored when null.

The models' JSON Schemas say what their validators check (``json_schema_extra``); the token
limit the settings set is added by :func:`_response_limits`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.chat.protocol import ParamError
from server.openapi import maximum, needs_schema, patch_schema
from server.responses import tools as function_tools
from server.settings import Settings

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

# Parameters of OpenAI's API this gateway does not serve: refused unless null/empty/false.
UNSUPPORTED = ("background", "conversation", "prompt", "max_tool_calls", "top_logprobs")
# Roles of input messages; "developer" is given to the model as a system message.
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = ("input_text", "output_text", "text")


class TextFormat(BaseModel):
    # _schema_given, in the schema
    model_config = ConfigDict(extra="allow", json_schema_extra=lambda s: needs_schema(s, "schema"))

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema" and not self.schema_:
            raise ValueError("text.format of type 'json_schema' needs a schema")
        return self


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat = Field(default_factory=TextFormat)


class InputMessage(BaseModel):
    """One message item of ``input``: a role and text (a string or text content parts)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]

    def text(self, where: str) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for i, part in enumerate(self.content):
            if part.get("type") not in TEXT_PARTS or not isinstance(part.get("text"), str):
                raise ParamError(
                    f"{where}.content.{i}",
                    f"content part type {part.get('type')!r} is not supported (text parts only)",
                )
            parts.append(part["text"])
        return "".join(parts)


def _response_rules(schema: dict[str, Any]) -> None:
    # ResponseRequest._supported: what this server does not serve must be null/empty/false
    empty = {
        "anyOf": [
            {"type": "null"},
            {"const": False},
            {"type": "array", "maxItems": 0},
            {"type": "object", "maxProperties": 0},
        ]
    }
    for name in UNSUPPORTED:
        schema["properties"].setdefault(name, empty)
    function_tools.document(schema)
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "type": {"const": "message"},
            "role": {"enum": ["user", "assistant", "system", "developer"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {
                                "type": {"enum": list(TEXT_PARTS)},
                                "text": {"type": "string"},
                            },
                        },
                    },
                ]
            },
        },
    }
    items = {"anyOf": [message, *function_tools.INPUT_ITEM_SCHEMAS]}
    schema["properties"]["input"] = {
        "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": items}]
    }


class ResponseRequest(BaseModel):
    """``POST /v1/responses`` (text in, text out; see the module docstring)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_response_rules)

    model: str = Field(..., min_length=1, max_length=256)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = Field(None, min_length=1, max_length=64)
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    text: TextConfig | None = None
    stream: bool = False
    store: bool = True
    metadata: dict[str, str] | None = None
    user: str | None = Field(None, max_length=256)
    tools: list[dict[str, Any]] | None = Field(None, max_length=function_tools.MAX_TOOLS)
    parallel_tool_calls: bool | None = None
    tool_choice: Any = None
    truncation: Literal["auto", "disabled"] | None = None

    @field_validator("input")
    @classmethod
    def _input_given(cls, value):
        if not value:
            raise ValueError("input must not be empty")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
        for key, text in value.items():
            if len(key) > MAX_METADATA_KEY_CHARS or len(text) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(
                    f"metadata keys are at most {MAX_METADATA_KEY_CHARS} characters, "
                    f"values at most {MAX_METADATA_VALUE_CHARS}"
                )
        return value

    @model_validator(mode="after")
    def _supported(self) -> ResponseRequest:
        extra = self.model_extra or {}
        for name in UNSUPPORTED:
            if extra.get(name) not in (None, [], False, {}):
                raise ParamError(name, f"{name} is not supported by this server's /v1/responses")
        function_tools.chat_tool_choice(self.tool_choice, function_tools.chat_tools(self.tools))
        return self

    def input_messages(self) -> list[dict[str, Any]]:
        """``input`` as chat messages (``developer`` becomes ``system``; function calls and their
        outputs become assistant ``tool_calls`` and ``tool`` messages)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        out = []
        for i, item in enumerate(self.input):
            kind = item.get("type", "message")
            if function_tools.add_tool_item(out, item, f"input.{i}"):
                continue
            if kind != "message":
                raise ParamError(f"input.{i}.type", f"input item type {kind!r} is not supported")
            try:
                message = InputMessage.model_validate(item)
            except ValueError as exc:
                raise ParamError(f"input.{i}", f"input.{i}: not a valid message item ({exc})") from None
            out.append({"role": ROLES[message.role], "content": message.text(f"input.{i}")})
        return out

    def chat_fields(self) -> dict[str, Any]:
        """The sampling part of the equivalent chat request."""
        body: dict[str, Any] = {}
        if self.max_output_tokens is not None:
            body["max_tokens"] = self.max_output_tokens
        for name in ("temperature", "top_p", "user"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            schema = {"name": fmt.name or "response", "schema": fmt.schema_}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        body.update(self.tool_fields())
        return body

    def tool_fields(self) -> dict[str, Any]:
        """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as chat's (none without tools)."""
        tools = function_tools.chat_tools(self.tools)
        if not tools:
            return {}
        body: dict[str, Any] = {"tools": tools}
        choice = function_tools.chat_tool_choice(self.tool_choice, tools)
        if choice is not None:
            body["tool_choice"] = choice
        if self.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = self.parallel_tool_calls
        return body

    def text_config(self) -> dict[str, Any]:
        """``text`` as the response object reports it."""
        if self.text is None:
            return {"format": {"type": "text"}}
        return {"format": self.text.format.model_dump(by_alias=True, exclude_none=True)}


@patch_schema(ResponseRequest)
def _response_limits(schema: dict[str, Any], settings: Settings) -> None:
    maximum(schema["properties"]["max_output_tokens"], "maximum", settings.max_completion_tokens)
