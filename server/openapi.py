"""The OpenAPI document, exact: every request body, every error status, who needs which key.

Two routes parse their body by hand (our error envelope for invalid JSON, the raw size cap), so
FastAPI does not know their body; they declare it with :func:`doc`::

    @router.post("/chat/completions", **doc(body=ChatCompletionRequest, errors=CHAT_ERRORS))

``doc`` only describes; parsing and validation stay in the route. :func:`install` then finishes
the document FastAPI generates, from what each route really depends on:

* the body models named by ``doc`` go into ``components.schemas`` (refs point there). The rules
  a model checks in validators are in its own schema (its ``json_schema_extra``, written with
  the helpers at the end of this module); the limits that come from the settings
  (``max_tokens`` at most ``max_completion_tokens``, ...) are added by the hooks each resource
  registers with :func:`patch_schema`;
* a route that depends on the API key (``Caller``) or the admin key declares the bearer scheme
  and its 401 (no API key configured: the /v1 routes are open and declare neither);
* a route the per-key quotas count (:func:`server.quotas.limited`) declares 429;
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

from server.auth import admin_caller, api_caller
from server.quotas import limited
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
    429: "Too many requests for this API key (`key_requests_per_minute`, `key_concurrent_requests`); "
    "retry after `Retry-After` seconds.",
    502: "The model engine failed on this request.",
    503: "A dependency (the engine or the store) is unavailable; retry after `Retry-After` seconds.",
}

# The errors of the chat-style routes beyond the automatic 400/401/413: an unknown model, the
# engine failing or away. Reusable by every route that forwards to the engine.
CHAT_ERRORS = (404, 502, 503)

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
            if limited(method, route.path_format):
                extra.append(429)
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


# --- JSON Schema for the rules models check in validators (used in their json_schema_extra) ---


def maximum(prop: dict[str, Any], key: str, value: int) -> None:
    """Set ``key`` (``maximum``, ``maxLength``...) on each bounded variant of an optional field."""
    for variant in prop.get("anyOf", [prop]):
        if variant.get("type") in ("integer", "array", "string"):
            variant[key] = value


def needs_true(field: str, flag: str) -> dict[str, Any]:
    """``field`` (when given and not null) needs ``flag: true``."""
    return {
        "anyOf": [
            {"not": {"required": [field]}},
            {"properties": {field: {"type": "null"}}},
            {"required": [flag], "properties": {flag: {"const": True}}},
        ]
    }


def needs_schema(schema: dict[str, Any], field: str) -> None:
    """A format of type ``json_schema`` needs its schema object in ``field``."""
    schema["if"] = {"required": ["type"], "properties": {"type": {"const": "json_schema"}}}
    schema["then"] = {"required": [field], "properties": {field: {"type": "object", "minProperties": 1}}}
