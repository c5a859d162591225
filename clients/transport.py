"""HTTP calls to Perennial's own routes (feedback, admin) with idempotent retries.

A :class:`Call` describes one request and how to read its answer; :func:`send` (sync) and
:func:`send_async` run it with the same policy:

* connection errors before anything was sent (refused, DNS, connect timeout) are always
  retried: the server never saw the request;
* for idempotent calls (GETs, DELETEs, feedback with its ``Idempotency-Key``, suite uploads),
  also 429, 5xx, read timeouts and connections dropped mid-answer, because repeating them
  cannot do anything twice: the server answers the same key + body with the first result;
* never any other 4xx, and never a non-idempotent call (promote, rollback, trigger a round)
  once it may have reached the server: a swap must not run twice because an answer was lost.

Delays grow exponentially with jitter (``backoff * 2**attempt``, capped, times a random factor
in [0.5, 1]) so retrying clients do not stampede; a ``Retry-After`` header (seconds or an HTTP
date) replaces the computed delay.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx

from clients.errors import (
    PerennialConnectionError,
    PerennialError,
    PerennialTimeoutError,
    UnexpectedResponseError,
    api_error,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        max_retries: retries after the first attempt (0 = never retry).
        backoff: the first delay in seconds, doubled per retry.
        max_backoff: cap of the computed delay.
        max_retry_after: cap of a server's ``Retry-After`` (a bad header must not hang us).
    """

    max_retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(
        self, attempt: int, retry_after: str | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

        Args:
            attempt: retries made so far.
            retry_after: the answer's ``Retry-After`` header, if any.
            rand: a uniform [0, 1) source (tests pin it).

        Returns:
            The server's ``Retry-After`` (capped), else the jittered exponential backoff.
        """
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(honoured, self.max_retry_after)
        cap = min(self.max_backoff, self.backoff * 2**attempt)
        return cap * (0.5 + 0.5 * rand())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the gateway and the reader of its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    admin: bool = False  # authenticate with the admin key (else the API key)
    idempotent: bool = True


def retryable_status(status: int) -> bool:
    return status == 429 or (status >= 500 and status != 501)


def transport_error(exc: httpx.HTTPError, url: str) -> PerennialError:
    """Our exception for an httpx transport failure."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return PerennialConnectionError(f"cannot connect to {url}: {exc or type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return PerennialTimeoutError(f"no answer from {url} in time ({type(exc).__name__})")
    return PerennialConnectionError(f"connection to {url} failed: {exc or type(exc).__name__}")


def _never_sent(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _plan(
    call: Call, policy: RetryPolicy, attempt: int, outcome: httpx.Response | httpx.HTTPError, url: str
) -> tuple[float | None, PerennialError | None]:
    """(delay before retrying, or None; the error to raise if not retrying)."""
    if isinstance(outcome, httpx.Response):
        error: PerennialError = api_error(outcome.status_code, outcome.content, outcome.headers)
        again = call.idempotent and retryable_status(outcome.status_code)
        retry_after = outcome.headers.get("retry-after")
    else:
        error = transport_error(outcome, url)
        again = _never_sent(outcome) or call.idempotent
        retry_after = None
    if not again or attempt >= policy.max_retries:
        return None, error
    return policy.delay(attempt, retry_after), error


def _parsed(call: Call[T], response: httpx.Response) -> T:
    try:
        return call.parse(response)
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # pydantic's errors are ValueErrors
        raise UnexpectedResponseError(
            f"cannot read the answer of {call.method} {call.path} ({response.status_code}): "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def _request_args(call: Call, auth: str | None) -> dict[str, Any]:
    headers = dict(call.headers)
    if auth:
        headers["Authorization"] = f"Bearer {auth}"
    return {
        "method": call.method,
        "url": call.path,
        "json": call.json,
        "params": call.params,
        "headers": headers,
    }


def send(
    http: httpx.Client,
    call: Call[T],
    policy: RetryPolicy,
    auth: str | None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call`` on ``http`` with retries; return its parsed answer or raise PerennialError."""
    url = str(http.base_url).rstrip("/")
    attempt = 0
    while True:
        outcome: httpx.Response | httpx.HTTPError
        try:
            outcome = http.request(**_request_args(call, auth))
        except httpx.TransportError as exc:
            outcome = exc
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            return _parsed(call, outcome)
        delay, error = _plan(call, policy, attempt, outcome, url)
        if delay is None:
            raise error from (outcome if isinstance(outcome, Exception) else None)
        sleep(delay)
        attempt += 1


async def send_async(http: httpx.AsyncClient, call: Call[T], policy: RetryPolicy, auth: str | None) -> T:
    """The async form of :func:`send`."""
    url = str(http.base_url).rstrip("/")
    attempt = 0
    while True:
        outcome: httpx.Response | httpx.HTTPError
        try:
            outcome = await http.request(**_request_args(call, auth))
        except httpx.TransportError as exc:
            outcome = exc
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            return _parsed(call, outcome)
        delay, error = _plan(call, policy, attempt, outcome, url)
        if delay is None:
            raise error from (outcome if isinstance(outcome, Exception) else None)
        await asyncio.sleep(delay)
        attempt += 1
