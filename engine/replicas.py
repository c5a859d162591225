"""Several serving engines behind one gateway: rotation, least-outstanding routing, retries.

A :class:`Replica` is one vLLM OpenAI server (supervised child or attached URL, an
:class:`~engine.runtime.EngineRuntime`) with the gateway's bookkeeping: the weights version it
holds, whether it is in rotation, and how many requests it has outstanding. The
:class:`ReplicaSet` sends each request to the serving replica with the fewest outstanding
requests (ties: the one picked longest ago) and reports the version of the replica that
answered, read while the request is still counted on it: a rolling swap takes a replica out of
rotation and waits for its outstanding count to reach zero before it touches the weights, so
that version is exactly the one that produced the reply.

Retries: a request that could not reach a replica (connection refused or dropped: the engine
died or is restarting) is sent to another serving replica, each replica tried at most once. A
non-streamed request is retried even if the replica had started generating (the client has seen
nothing yet); a stream only until its first event arrives. Timeouts and engine error replies
are not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from engine.client import EngineClient, EngineUnavailable
from engine.runtime import EngineRuntime

T = TypeVar("T")


class Replica:
    """One serving engine and what the gateway knows about it."""

    def __init__(self, name: str, runtime: EngineRuntime, version: str = ""):
        self.name = name
        self.runtime = runtime
        self.version = version  # the weights version it holds (set only while it serves nothing)
        self.in_rotation = True
        self.outstanding = 0
        self.requests = 0  # requests it answered (or started a stream for)
        self.retried_away = 0  # requests that could not reach it and went to another replica
        self.last_pick = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def client(self) -> EngineClient:
        return self.runtime.client

    @property
    def url(self) -> str:
        return self.client.base_url

    @property
    def serving(self) -> bool:
        """Ready and in rotation: new requests may go to it."""
        return self.in_rotation and self.runtime.ready

    def acquire(self) -> None:
        self.outstanding += 1
        self._idle.clear()

    def release(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.outstanding = 0
            self._idle.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request of this gateway is outstanding on it; False on timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self._idle.is_set()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.runtime.status(),
            "version": self.version,
            "in_rotation": self.in_rotation,
            "serving": self.serving,
            "outstanding": self.outstanding,
            "requests": self.requests,
            "retried_away": self.retried_away,
        }


class LeasedStream:
    """A replica's event stream that releases the replica when closed (or exhausted)."""

    def __init__(self, events: AsyncIterator[dict], replica: Replica, first: dict | None):
        self._events = events
        self.replica = replica
        self.first = first
        self.version = replica.version
        self._closed = False

    def __aiter__(self) -> LeasedStream:
        return self

    async def __anext__(self) -> dict:
        return await anext(self._events)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._events.aclose()
        finally:
            self.replica.release()


class ReplicaSet:
    """The gateway's serving engines: one or more :class:`Replica`, used as one engine."""

    def __init__(self, replicas: list[Replica]):
        if not replicas:
            raise ValueError("at least one replica")
        self.replicas = replicas
        self._picks = itertools.count(1)

    # --- what the rest of the gateway asks of "the engine" -----------------------------------

    @property
    def ready(self) -> bool:
        """At least one replica serves."""
        return any(r.serving for r in self.replicas)

    @property
    def client(self) -> EngineClient:
        """The first replica's client (tools that talk to one engine, e.g. at boot)."""
        return self.replicas[0].client

    @property
    def supervisor(self):
        """The first replica's supervisor (None when attached)."""
        return self.replicas[0].runtime.supervisor

    async def start(self, timeout_s: float) -> None:
        await asyncio.gather(*(r.runtime.start(timeout_s) for r in self.replicas))

    async def stop(self) -> None:
        await asyncio.gather(*(r.runtime.stop() for r in self.replicas), return_exceptions=True)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until some replica serves; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ready:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True

    async def healthy(self) -> bool:
        """Some serving replica answers its /health now."""
        checks = await asyncio.gather(*(r.client.healthy() for r in self.replicas if r.serving))
        return any(checks)

    def by_url(self, url: str) -> Replica | None:
        return next((r for r in self.replicas if r.url.rstrip("/") == url.rstrip("/")), None)

    # --- routing ------------------------------------------------------------------------------

    def pick(self, exclude: set[str] = frozenset()) -> Replica | None:
        """The serving replica with the fewest outstanding requests (ties: least recently picked)."""
        candidates = [r for r in self.replicas if r.serving and r.name not in exclude]
        if not candidates:
            return None
        replica = min(candidates, key=lambda r: (r.outstanding, r.last_pick))
        replica.last_pick = next(self._picks)
        return replica

    def _next(self, tried: set[str], last: EngineUnavailable | None) -> Replica:
        replica = self.pick(tried)
        if replica is None:
            raise last or EngineUnavailable("no serving replica")
        return replica

    async def _first_reachable(self, attempt: Callable[[Replica], Awaitable[T]]) -> tuple[Replica, T]:
        """``attempt(replica)`` on serving replicas, each at most once, until one is reached.

        The replica that answered is returned still acquired (the caller releases it); a
        retryable failure moves on to the next replica, anything else is raised.
        """
        tried: set[str] = set()
        last: EngineUnavailable | None = None
        while True:
            replica = self._next(tried, last)
            replica.acquire()
            try:
                result = await attempt(replica)
            except EngineUnavailable as exc:
                replica.release()
                if not exc.retryable:
                    raise
                replica.retried_away += 1
                tried.add(replica.name)
                last = exc
                continue
            except BaseException:
                replica.release()
                raise
            replica.requests += 1
            return replica, result

    async def post(self, path: str, body: dict) -> tuple[dict, str]:
        """``POST`` to one replica; its reply and the version of the weights that produced it."""
        replica, result = await self._first_reachable(lambda r: r.client.post(path, body))
        try:
            return result, replica.version
        finally:
            replica.release()

    async def stream(self, path: str, body: dict) -> LeasedStream:
        """Open a stream on one replica and read its first event (retried until then).

        The replica stays counted until the returned stream is closed: the caller must
        ``aclose()`` it.
        """

        async def open_stream(replica: Replica) -> tuple[AsyncIterator[dict], dict | None]:
            events = await replica.client.stream(path, body)
            try:
                return events, await anext(events, None)
            except BaseException:
                await events.aclose()
                raise

        replica, (events, first) = await self._first_reachable(open_stream)
        return LeasedStream(events, replica, first)

    # --- reporting ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """One replica: its status as before, plus ``replicas``. Several: an aggregate."""
        replicas = [r.status() for r in self.replicas]
        if len(self.replicas) == 1:
            return {**self.replicas[0].runtime.status(), "replicas": replicas}
        serving = sum(r["serving"] for r in replicas)
        state = "ready" if serving == len(replicas) else "degraded" if serving else "unavailable"
        return {
            "state": state,
            "serving_replicas": serving,
            "restarts": sum(r.get("restarts") or 0 for r in replicas),
            "supervised": all(r.get("supervised") for r in replicas),
            "replicas": replicas,
        }
