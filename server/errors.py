"""Every error the gateway returns uses the OpenAI envelope, with the right status.

``APIError`` is raised by services and routes; the handlers installed by
:func:`install_error_handlers` turn it, request validation errors, unknown routes and any
unexpected exception into ``{"error": {"message", "type", "param", "code"}}``. An unexpected
exception is logged with its traceback and answered with a plain 500 message, never the trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "engine_error",
    503: "service_unavailable",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error")


class APIError(Exception):
    """An error answered in the OpenAI envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or error_type(status)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.type, self.param, self.code)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def validation_error(exc: ValidationError | RequestValidationError) -> APIError:
    """The first validation problem as a 400 naming its parameter (``messages.0.role``)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    cause = (first.get("ctx") or {}).get("error")
    param = getattr(cause, "param", None) or (".".join(loc) or None)
    message = str(cause) if cause is not None else first.get("msg", "invalid request")
    message = message.removeprefix("Value error, ")
    if param and not message.startswith(param):
        message = f"{param}: {message}"
    return APIError(400, message, param=param, code="invalid_value")


def allowed_methods(request: Request) -> str:
    """``Allow`` of a 405: the methods of every route whose path matches, not just the first's.

    Starlette answers 405 with the methods of the first route that matched the path only, which
    is wrong when, say, ``GET /v1/feedback`` and ``POST /v1/feedback`` are two routes.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return ", ".join(sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m)))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "no such route"
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        error = APIError(exc.status_code, message, code=code, headers=headers)
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, "internal error", type="server_error"))
