"""Pure ASGI middleware: request-body limit, per-key quotas and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses pass through untouched and the
per-request cost stays in microseconds.
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import APIError, error_type
from server.metrics import GatewayMetrics
from server.quotas import KeyQuotas, limited


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413: by Content-Length, or while streaming."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    return await self._reject(send)
                break
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)  # answered by the APIError handler
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send) -> None:
        error = _too_large(self.limit)
        body = json.dumps(error.body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class QuotaMiddleware:
    """Per-key request rate and concurrent requests (:mod:`server.quotas`): 429 with Retry-After.

    Here rather than in a route dependency so a stream holds its slot until its last byte. The
    caller is identified as the routes do (``app.state.keys``); a request without a valid key is
    left to the route, which answers 401, and costs no quota.
    """

    def __init__(self, app: ASGIApp, quotas: KeyQuotas):
        self.app = app
        self.quotas = quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = getattr(getattr(scope.get("app"), "state", None), "keys", None)  # set by the lifespan
        if scope["type"] != "http" or keys is None or not limited(scope["method"], scope["path"]):
            return await self.app(scope, receive, send)
        try:
            caller = keys.caller(Request(scope))
        except APIError:
            return await self.app(scope, receive, send)
        wait = self.quotas.acquire(caller)
        if wait is not None:
            error = APIError(
                429,
                f"too many requests for this API key; retry after {wait} s",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
            return await _answer(send, error)
        try:
            await self.app(scope, receive, send)
        finally:
            self.quotas.release(caller)


async def _answer(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Count every request by route template and status, time it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(error_type(status)).inc()
