"""The one calling convention of our worker extensions, on both sides of ``/collective_rpc``.

vLLM's HTTP route ``POST /collective_rpc {"method": ..., "kwargs": {...}}`` hands kwargs to the
worker method as given, and an exception escaping the method takes the whole vLLM server down
(measured: the API server shuts down). So every worker method of ours is a
:func:`worker_method`: its kwargs arrive as strings (JSON where they are not plain strings) and
are decoded, and any exception becomes ``{"error": ..., "trace": ...}``. On the caller's side
:func:`rpc_result` turns that back into a typed :class:`EngineRPCError`. One policy for the
serving engine and the learner engine alike: a bad call fails the call, never the engine.
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from typing import Any


class EngineRPCError(RuntimeError):
    """A worker extension method reported an error (the engine itself is still up)."""


def decode_arg(value: Any) -> Any:
    """A kwarg as sent by :meth:`engine.client.EngineClient.collective_rpc` (JSON or a plain string)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def worker_method(method: Callable[..., Any]) -> Callable[..., dict]:
    """Decorate a worker extension method: decode its kwargs, and never let it raise.

    The method must return a JSON-able dict. Errors come back as ``{"error", "trace"}``.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> dict:
        try:
            args = tuple(decode_arg(a) for a in args)
            result = method(self, *args, **{k: decode_arg(v) for k, v in kwargs.items()})
            return result if result is not None else {}
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)}

    return wrapper


def rpc_result(results: list[Any] | None) -> dict:
    """The first worker's result of a :func:`worker_method`; raise its error if it had one.

    Every worker of an engine applies the same call (the same seeds, the same snapshot), so the
    first result stands for all of them.
    """
    if not results:
        raise EngineRPCError("the engine returned no result")
    first = results[0]
    if not isinstance(first, dict):
        raise EngineRPCError(f"unexpected result: {str(first)[:200]}")
    if "error" in first:
        raise EngineRPCError(first["error"])
    return first
