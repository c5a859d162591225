"""The OpenAPI document, exact: every request body, every error status, who needs which key.

Two routes parse their body by hand (our error envelope for invalid JSON, the raw size cap), so
FastAPI does not know their body; they declare it with :func:`doc`::

    @router.post("/chat/completions", **doc(body=ChatCompletionRequest, errors=CHAT_ERRORS))

``doc`` only describes; parsing and validation stay in the route. :func:`install` then finishes
the document FastAPI generates, from what each route really depends on:

* the body models named by ``doc`` go into ``components.schemas`` (refs point there), with the
  limits that come from the settings (``max_tokens`` at most ``max_completion_tokens``, ...)
  and the rules the models check in validators that JSON Schema can say;
* a route that depends on the API key (``Caller``) or the admin key declares the bearer scheme
  and its 401 (no API key configured: the /v1 routes are open and declare neither);
* a route with parameters or a body declares 400 (we answer validation errors with 400 in the
  envelope, never FastAPI's 422, so its 422 is dropped), a body route 413 (``max_body_bytes``);
* every error response has the envelope schema ``Error`` (see :func:`server.errors.envelope`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from evals.verifiers import VERIFIER_TYPES
from server.chat.protocol import (
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ResponseFormat,
)
from server.deps import admin_caller, api_caller
from server.feedback.protocol import FeedbackBatchCreate, FeedbackCreate
from server.responses.protocol import MAX_METADATA_KEYS, UNSUPPORTED, ResponseRequest, TextFormat
from server.settings import Settings

REF = "#/components/schemas/{model}"
API_KEY_SCHEME = "apiKey"
ADMIN_KEY_SCHEME = "adminKey"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(BaseModel):
    """The OpenAI error envelope every error answer uses."""

    error: ErrorDetail


DESCRIPTIONS = {
    400: "Invalid request: malformed JSON or a value out of its limits (`param` names it).",
    401: "Missing or invalid key (`Authorization: Bearer <key>`).",
    403: "Not allowed.",
    404: "No such resource (the model, completion, version... `param` names it).",
    409: "Conflicts with the current state (`code` says which).",
    413: "The request body is larger than `max_body_bytes`.",
    415: "Unsupported content type.",
    429: "Too many requests.",
    502: "The model engine failed on this request.",
    503: "A dependency (the engine or the store) is unavailable; retry after `Retry-After` seconds.",
}

# The errors of the chat-style routes beyond the automatic 400/401/413: an unknown model, the
# engine failing or away. Reusable by every route that forwards to the engine.
CHAT_ERRORS = (404, 502, 503)
FEEDBACK_ERRORS = (404, 409, 503)

# Success media types FastAPI cannot see (the routes build their own responses).
CHAT_SUCCESS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completion; with `stream: true`, its chunks as server-sent events.",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {}},
    }
}
JSONL: dict[int | str, dict[str, Any]] = {
    200: {"description": "One JSON object per line.", "content": {"application/x-ndjson": {}}}
}
PROMETHEUS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {}}}
}

# Body models named by doc(), by schema name: install() puts them into components.
_BODIES: dict[str, type[BaseModel]] = {}
# Changes to a body model's schema that depend on the settings (limits read at request time).
SchemaPatch = Callable[[dict[str, Any], Settings], None]
_PATCHES: dict[str, list[SchemaPatch]] = {}


def doc(
    *,
    body: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a route decorator that document it.

    Args:
        body: the wire model the route validates its hand-parsed JSON body with (required).
        errors: the statuses the route itself raises, beyond the automatic 400/401/413.
        responses: more ``responses=`` entries (success media types, for example).
    """
    out: dict[str, Any] = {"responses": {**_error_responses(errors), **(responses or {})}}
    if body is not None:
        _BODIES[body.__name__] = body
        content = {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}}
        out["openapi_extra"] = {"requestBody": {"required": True, "content": content}}
    return out


def _error_responses(statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Error, "description": DESCRIPTIONS[status]} for status in statuses}


def patch_schema(model: type[BaseModel]) -> Callable[[SchemaPatch], SchemaPatch]:
    """Register a settings-dependent change to ``model``'s schema in the document."""

    def register(fn: SchemaPatch) -> SchemaPatch:
        _PATCHES.setdefault(model.__name__, []).append(fn)
        return fn

    return register


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the finished document (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(generate(), app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    settings: Settings = app.state.settings
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _add_bodies(schemas, settings)
    open_api_keys = not settings.api_keys
    schemes = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        calls = _dependency_calls(route)
        for method in route.methods:
            op = schema["paths"][route.path_format].get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            extra: list[int] = []
            if admin_caller in calls:
                op["security"] = [{ADMIN_KEY_SCHEME: []}]
                schemes[ADMIN_KEY_SCHEME] = "The admin key (PERENNIAL_ADMIN_KEY)."
                extra.append(401)
            elif api_caller in calls and not open_api_keys:
                op["security"] = [{API_KEY_SCHEME: []}]
                schemes[API_KEY_SCHEME] = "An API key (PERENNIAL_API_KEYS)."
                extra.append(401)
            if op.get("parameters") or "requestBody" in op:
                extra.append(400)
            if "requestBody" in op:
                extra.append(413)
            for status, response in _responses(extra).items():
                responses.setdefault(status, response)
            op["responses"] = dict(sorted(responses.items()))
    components["securitySchemes"] = {
        name: {"type": "http", "scheme": "bearer", "description": text} for name, text in schemes.items()
    }
    _drop_unused(schemas)
    return schema


def _responses(statuses: Iterable[int]) -> dict[str, dict[str, Any]]:
    content = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    return {str(s): {"description": DESCRIPTIONS[s], "content": content} for s in statuses}


def _dependency_calls(route: APIRoute) -> set[Callable[..., Any]]:
    seen: set[Callable[..., Any]] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            seen.add(dependant.call)
        stack.extend(dependant.dependencies)
    return seen


def _add_bodies(schemas: dict[str, Any], settings: Settings) -> None:
    models = [(model, "validation") for model in (*_BODIES.values(), Error)]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    for name, body in top.get("$defs", {}).items():
        for fn in _PATCHES.get(name, ()):
            fn(body, settings)
        if name in schemas and schemas[name] != body:
            raise RuntimeError(f"two schemas named {name!r} in the OpenAPI document")
        schemas[name] = body


def _drop_unused(schemas: dict[str, Any]) -> None:
    """FastAPI's 422 models: only its 422 responses (dropped above) referred to them."""
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


# --- limits the settings set, checked at request time (server.chat.serving, feedback) -------


def _maximum(prop: dict[str, Any], key: str, value: int) -> None:
    for variant in prop.get("anyOf", [prop]):
        if variant.get("type") in ("integer", "array", "string"):
            variant[key] = value


@patch_schema(ChatCompletionRequest)
def _chat_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    _maximum(props["max_tokens"], "maximum", settings.max_completion_tokens)
    _maximum(props["max_completion_tokens"], "maximum", settings.max_completion_tokens)
    _maximum(props["n"], "maximum", settings.max_n)
    props["messages"]["maxItems"] = settings.max_messages


@patch_schema(CompletionRequest)
def _completion_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    _maximum(props["max_tokens"], "maximum", settings.max_completion_tokens)
    _maximum(props["n"], "maximum", settings.max_n)
    # a list of prompts (strings or token-id lists) holds at most max_prompts
    for variant in props["prompt"]["anyOf"]:
        if variant.get("type") == "array" and variant.get("items", {}).get("type") != "integer":
            variant["maxItems"] = settings.max_prompts


@patch_schema(ResponseRequest)
def _response_limits(schema: dict[str, Any], settings: Settings) -> None:
    _maximum(schema["properties"]["max_output_tokens"], "maximum", settings.max_completion_tokens)
    _maximum(schema["properties"]["metadata"], "maxProperties", MAX_METADATA_KEYS)


@patch_schema(FeedbackCreate)
def _feedback_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    _maximum(props["correction"], "maxLength", settings.feedback_text_max_chars)
    _maximum(props["reference"], "maxLength", settings.feedback_text_max_chars)


@patch_schema(FeedbackBatchCreate)
def _batch_limits(schema: dict[str, Any], settings: Settings) -> None:
    schema["properties"]["items"]["maxItems"] = settings.feedback_batch_max


# --- rules the models check in validators (or the feedback service), as JSON Schema -----------


def _needs_true(field: str, flag: str) -> dict[str, Any]:
    """``field`` (when given and not null) needs ``flag: true``."""
    return {
        "anyOf": [
            {"not": {"required": [field]}},
            {"properties": {field: {"type": "null"}}},
            {"required": [flag], "properties": {flag: {"const": True}}},
        ]
    }


def _sampling_rules(schema: dict[str, Any], refused: Iterable[str]) -> None:
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
    schema.setdefault("allOf", []).append(_needs_true("stream_options", "stream"))
    schema["not"] = {"anyOf": [{"required": [name]} for name in sorted(refused)]}


@patch_schema(CompletionRequest)
def _completion_rules(schema: dict[str, Any], settings: Settings) -> None:
    _sampling_rules(schema, CompletionRequest.refused)
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


@patch_schema(ResponseRequest)
def _response_rules(schema: dict[str, Any], settings: Settings) -> None:
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
    schema["properties"]["tool_choice"] = {"anyOf": [{"type": "null"}, {"enum": ["none", "auto"]}]}
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
                                "type": {"enum": ["input_text", "output_text", "text"]},
                                "text": {"type": "string"},
                            },
                        },
                    },
                ]
            },
        },
    }
    schema["properties"]["input"] = {
        "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": message}]
    }


@patch_schema(ChatCompletionRequest)
def _chat_rules(schema: dict[str, Any], settings: Settings) -> None:
    # SamplingRequest's rules, and ChatCompletionRequest's own: top_logprobs needs logprobs.
    schema["allOf"] = [_needs_true("top_logprobs", "logprobs")]
    _sampling_rules(schema, ChatCompletionRequest.refused)


def _needs_schema(schema: dict[str, Any], field: str) -> None:
    """A format of type ``json_schema`` needs its schema object in ``field``."""
    schema["if"] = {"required": ["type"], "properties": {"type": {"const": "json_schema"}}}
    schema["then"] = {"required": [field], "properties": {field: {"type": "object", "minProperties": 1}}}


@patch_schema(ResponseFormat)
def _response_format_rule(schema: dict[str, Any], settings: Settings) -> None:
    _needs_schema(schema, "json_schema")  # ResponseFormat._schema_given


@patch_schema(TextFormat)
def _text_format_rule(schema: dict[str, Any], settings: Settings) -> None:
    _needs_schema(schema, "schema")  # TextFormat._schema_given


@patch_schema(ChatMessage)
def _content_rule(schema: dict[str, Any], settings: Settings) -> None:
    # ChatMessage._content_required: only an assistant message may leave content out or null.
    schema["anyOf"] = [
        {"properties": {"role": {"const": "assistant"}}},
        {"required": ["content"], "properties": {"content": {"type": ["string", "array"]}}},
    ]


SIGNALS = {
    "reward": {"type": "number"},
    "label": {"type": "string"},
    "correction": {"type": "string"},
    "reference": {"type": "string"},
    "verifier": {"type": ["string", "object"]},
}


@patch_schema(FeedbackCreate)
def _feedback_rules(schema: dict[str, Any], settings: Settings) -> None:
    # server.feedback.service._check_item: something to learn from, a label that agrees with
    # the reward, a verifier of a known type.
    schema["anyOf"] = [{"required": [name], "properties": {name: s}} for name, s in SIGNALS.items()]
    up_below_zero = {
        "properties": {"label": {"const": "up"}, "reward": {"type": "number", "exclusiveMaximum": 0}}
    }
    down_above = {
        "properties": {"label": {"const": "down"}, "reward": {"type": "number", "exclusiveMinimum": 0}}
    }
    schema["not"] = {
        "anyOf": [{**rule, "required": ["label", "reward"]} for rule in (up_below_zero, down_above)]
    }
    schema["properties"]["verifier"]["anyOf"] = [
        {"type": "string", "enum": list(VERIFIER_TYPES)},
        *(
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"const": kind}, **opts},
                "additionalProperties": False,
            }
            for kind, opts in VERIFIER_OPTIONS.items()
        ),
        {"type": "null"},
    ]
    schema.setdefault("allOf", []).extend(_reference_rules())


# evals.verifiers.parse_verifier: each verifier's options.
PATTERN = {"type": "string", "minLength": 1, "maxLength": 1000, "format": "regex"}
JSON_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]
VERIFIER_OPTIONS: dict[str, dict[str, Any]] = {
    "exact": {"case_sensitive": {"type": "boolean"}},
    "contains": {"case_sensitive": {"type": "boolean"}},
    "number": {
        "tolerance": {"type": "number", "minimum": 0},
        "partial": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "regex": {"pattern": PATTERN, "flags": {"type": "string", "pattern": "^[ims]*$"}},
    "json_schema": {"schema": {"type": "object", "properties": {"type": {"enum": JSON_TYPES}}}},
    "json": {},
}
NUMBER = r"^-?([0-9][0-9,]*([.][0-9]+)?([eE][-+]?[0-9]+)?|[.][0-9]+)[.]?$"


def _verifier_is(kind: str, *, without: str | None = None) -> dict[str, Any]:
    """The feedback's verifier is ``kind`` (by name, or as an object without option ``without``)."""
    as_object: dict[str, Any] = {"type": "object", "properties": {"type": {"const": kind}}}
    if without:
        as_object["not"] = {"required": [without]}
    return {"required": ["verifier"], "properties": {"verifier": {"anyOf": [{"const": kind}, as_object]}}}


def _reference_rules() -> list[dict[str, Any]]:
    """What each verifier needs of ``reference`` (evals.verifiers._check), as if/then rules."""

    def needs(reference: dict[str, Any]) -> dict[str, Any]:
        return {"required": ["reference"], "properties": {"reference": {"type": "string", **reference}}}

    no_verifier = {
        "anyOf": [{"not": {"required": ["verifier"]}}, {"properties": {"verifier": {"type": "null"}}}]
    }
    given = {"required": ["reference"], "properties": {"reference": {"type": "string"}}}
    return [
        # a reference alone is checked by `exact`: it must not be empty
        {"if": {"allOf": [no_verifier, given]}, "then": needs({"minLength": 1})},
        {"if": _verifier_is("exact"), "then": needs({"minLength": 1})},
        {"if": _verifier_is("contains"), "then": needs({"minLength": 1})},
        {"if": _verifier_is("number"), "then": needs({"pattern": NUMBER})},
        {"if": _verifier_is("regex", without="pattern"), "then": needs(PATTERN)},
        {"if": _verifier_is("json"), "then": needs({"contentMediaType": "application/json"})},
        {
            "if": _verifier_is("json_schema", without="schema"),
            "then": needs(
                {
                    "contentMediaType": "application/json",
                    "contentSchema": VERIFIER_OPTIONS["json_schema"]["schema"],
                }
            ),
        },
    ]
