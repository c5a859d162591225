"""The SDK's exceptions, built from Perennial's OpenAI error envelope.

Every error the gateway answers is ``{"error": {"message", "type", "param", "code"}}`` with an
HTTP status; :func:`api_error` turns one into the subclass of :class:`PerennialAPIError` for
that status, so callers catch what they can handle::

    try:
        admin.promote("v3")
    except ConflictError as exc:        # 409: exc.code == "gate_not_passed"
        print(exc)                      # error 409 gate_not_passed: v3 is not approved ...

Errors that never reached an answer are :class:`PerennialConnectionError` (nothing listening,
DNS, connection reset) and :class:`PerennialTimeoutError` (no answer in time, or a wait ran
past its deadline).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class PerennialError(Exception):
    """Base of every error the SDK raises."""


class PerennialConnectionError(PerennialError):
    """The server could not be reached (refused, unresolvable, reset before an answer)."""


class PerennialTimeoutError(PerennialError):
    """No answer within the timeout, or a wait (e.g. for a round) ran past its deadline."""


class UnexpectedResponseError(PerennialError):
    """A success answer the SDK cannot read (not JSON, or not the expected shape): a proxy in
    between, or a server of another version."""


class PerennialAPIError(PerennialError):
    """The server answered with an error envelope.

    Attributes:
        status: the HTTP status.
        message: the envelope's human-readable message.
        type: the envelope's error type (``conflict_error``, ``authentication_error``...).
        code: the machine-readable code (``gate_not_passed``, ``invalid_api_key``...), or None.
        param: the request parameter at fault (``reason``, ``items.3.verifier``...), or None.
        headers: the response headers (``Retry-After`` among them).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"error {self.status}{code}: {self.message}"


class BadRequestError(PerennialAPIError):
    """400 (or 422): the request is invalid; ``param`` names the field."""


class AuthenticationError(PerennialAPIError):
    """401: missing or wrong API key / admin key."""


class PermissionDeniedError(PerennialAPIError):
    """403: the key may not do this."""


class NotFoundError(PerennialAPIError):
    """404: no such completion, version, round, suite or route."""


class ConflictError(PerennialAPIError):
    """409: the state forbids it (gate not passed, round in progress, key reused...)."""


class PayloadTooLargeError(PerennialAPIError):
    """413: the request body is over the server's limit."""


class RateLimitError(PerennialAPIError):
    """429: too many requests; retried with backoff where the call is idempotent."""


class ServerError(PerennialAPIError):
    """5xx: the server or its engine/store failed; 502/503 are often transient."""


_BY_STATUS: dict[int, type[PerennialAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class(status: int) -> type[PerennialAPIError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, PerennialAPIError)


def api_error(status: int, body: Any, headers: Mapping[str, str] | None = None) -> PerennialAPIError:
    """Build the exception for an error answer.

    Args:
        status: the HTTP status (>= 400).
        body: the decoded JSON body (the envelope, or its ``error`` member), or raw text/bytes
            when the answer was not JSON (a proxy's HTML page, say).
        headers: the response headers.

    Returns:
        The :class:`PerennialAPIError` subclass for ``status``, carrying the envelope's fields.
    """
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            pass
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return error_class(status)(
            status,
            error["message"],
            type=error.get("type"),
            code=error.get("code"),
            param=error.get("param"),
            headers=headers,
        )
    text = body if isinstance(body, str) and body.strip() else f"HTTP {status} with no error body"
    return error_class(status)(status, " ".join(text.split())[:300], headers=headers)
