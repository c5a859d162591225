"""Per-key quotas: a request rate, concurrent requests, and a token budget per request.

Every caller may be hostile (OWASP API4, unrestricted resource consumption), so each API key
(its key id, :mod:`server.auth`; an open gateway has one caller, ``anonymous``) gets:

* a **request rate**: a token bucket holding ``key_requests_per_minute`` requests, refilled at
  that rate. A burst of a minute's requests is allowed, then one per ``60 / rate`` seconds;
* **concurrent requests**: at most ``key_concurrent_requests`` in flight, a stream counted
  until its last byte;
* a **token budget** per request (:func:`tokens_to_send`): the gateway always sends the engine a
  ``max_tokens``, at most ``max_completion_tokens``, and refuses a request whose tokens x choices
  (``n`` x prompts) exceed ``max_request_tokens``.

Both counters live in this process: with several gateways each enforces its own. The rate and
concurrency are checked by :class:`server.middleware.QuotaMiddleware` on the routes
:func:`limited` names.

>>> quotas = KeyQuotas(per_minute=60, concurrent=1, clock=lambda: 0.0)
>>> quotas.acquire("key_a") is None, quotas.acquire("key_a")
(True, 1)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# The requests a key's quota counts: every POST under /v1 (completions, responses, feedback).
LIMITED_PREFIX = "/v1/"


def limited(method: str, path: str) -> bool:
    """Whether a request counts against its key's rate and concurrency."""
    return method.upper() == "POST" and path.startswith(LIMITED_PREFIX)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    in_flight: int = 0


@dataclass
class KeyQuotas:
    """Request rate (a token bucket) and concurrent requests, per key id.

    The number of buckets is the number of keys that passed authentication: the configured
    keys (or ``anonymous``), so memory stays bounded.
    """

    per_minute: int
    concurrent: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, key: str) -> int | None:
        """Admit one request of ``key``: None, or the seconds to wait (``Retry-After``).

        An admitted request holds one of its key's concurrent slots until :meth:`release`.
        A refused one costs nothing.
        """
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
        rate = self.per_minute / 60.0
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))
        if bucket.in_flight >= self.concurrent:
            return 1
        bucket.tokens -= 1.0
        bucket.in_flight += 1
        return None

    def release(self, key: str) -> None:
        """A request of ``key`` admitted by :meth:`acquire` has finished."""
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1

    def in_flight(self, key: str) -> int:
        bucket = self._buckets.get(key)
        return bucket.in_flight if bucket else 0


class BudgetError(ValueError):
    """A request over its token budget; ``param`` names the field to lower."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def tokens_to_send(
    requested: int | None,
    *,
    choices: int,
    cap: int,
    budget: int,
    default: int | None = None,
    token_param: str = "max_tokens",
    choice_param: str = "n",
) -> int:
    """The ``max_tokens`` the gateway sends the engine for one request.

    Args:
        requested: the request's own token limit (``max_tokens``...), None when not given.
        choices: the sequences the engine generates: ``n`` x prompts.
        cap: ``max_completion_tokens``, the most tokens of one sequence.
        budget: ``max_request_tokens``, the most tokens of all the request's sequences.
        default: the endpoint's own default when ``requested`` is None (16 on /v1/completions,
            as OpenAI's), else the cap.
        token_param, choice_param: the names the request gives the two (for the error).

    Returns:
        ``requested`` when given; otherwise the default (or the cap), lowered to what the cap and
        the budget allow.

    Raises:
        BudgetError: ``requested`` over the cap, ``requested`` x ``choices`` over the budget,
            or more choices than the budget has tokens.

    >>> tokens_to_send(None, choices=8, cap=1024, budget=4096)
    512
    >>> tokens_to_send(100, choices=2, cap=1024, budget=4096)
    100
    """
    if requested is None:
        if choices > budget:
            raise BudgetError(
                choice_param,
                f"{choice_param}: {choices} sequences exceed the per-request budget of {budget} tokens",
            )
        return min(cap, budget // choices, default or cap)
    if requested > cap:
        raise BudgetError(token_param, f"{token_param}: at most {cap}")
    if requested * choices > budget:
        raise BudgetError(
            token_param,
            f"{token_param}: {requested} tokens x {choices} sequences = {requested * choices} "
            f"exceeds the per-request budget of {budget} tokens",
        )
    return requested
