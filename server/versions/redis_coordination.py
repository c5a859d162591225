"""SwapCoordination across several gateways that share the same replicas, coordinated through Redis.

Every gateway sharing the replicas (same ``PERENNIAL_ENGINE_URLS``, database and
``PERENNIAL_REDIS_PREFIX``) runs with ``PERENNIAL_SWAP_COORDINATION=redis``:

- **One rolling swap at a time.** The gateway that swaps holds the key ``<prefix>:swap:lock``
  (``SET NX`` with a token and a TTL it renews while it works; released only by its holder). A
  promotion on another gateway meanwhile answers 409 ``swap_in_progress``. A gateway that
  dies mid-swap stops renewing: the lock expires after ``lock_ttl_s``.
- **Drain across gateways.** Before it pauses a replica the rolling gateway publishes
  ``draining`` on ``<prefix>:swap:events``; every other gateway takes that replica out of
  its own rotation, waits for its own requests on it to finish, and acks. The rolling gateway
  waits for as many acks as the publish reached other subscribers (at most the drain timeout).
- **The served version.** ``swapped`` (one replica holds a version, back in rotation) and
  ``finished`` (all of them do: the served version) update every gateway's view, so each reply
  is stamped with the version of the replica that produced it whichever gateway answered.

Replicas are matched by URL: give every gateway the same URLs. If the rolling gateway vanishes
after a ``draining``, the others put that replica back once the lock is gone, at the version
the engine itself reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.versions.coordination import SwapBusy

if TYPE_CHECKING:
    from engine.replicas import Replica, ReplicaSet
    from server.versions.swap import HotSwapper, SwapTarget

log = logging.getLogger(__name__)

# Compare-and-delete / compare-and-extend: only the holder's token may touch the lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


def gateway_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class RedisCoordination:
    """The rolling swap lock and the rolling swap events, shared by every gateway on one Redis prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        drain_timeout_s: float = 60.0,
        lock_ttl_s: float = 30.0,
        name: str | None = None,
    ):
        self.redis = redis
        self.name = name or gateway_id()
        self.lock_key = f"{prefix}:swap:lock"
        self.channel = f"{prefix}:swap:events"
        self.drain_timeout_s = drain_timeout_s
        self.lock_ttl_s = lock_ttl_s
        self.swapper: HotSwapper | None = None
        self._holding = False
        self._remote: str | None = None  # the other gateway rolling out, as far as we heard
        self._remote_seen = 0.0
        self._ids = itertools.count(1)
        self._acks: dict[int, set[str]] = {}
        self._ack_event = asyncio.Event()
        self._away: dict[str, float] = {}  # replica url -> when another gateway drained it
        self._tasks: set[asyncio.Task] = set()
        self._listener: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def attach(self, swapper: HotSwapper) -> None:
        self.swapper = swapper

    @property
    def engine(self) -> ReplicaSet:
        return self.swapper.engine

    async def start(self) -> None:
        """Subscribe to the events channel (before the first rolling swap can be announced)."""
        self._listener = asyncio.create_task(self._listen(), name="swap-events")
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def close(self) -> None:
        tasks = [t for t in (self._listener, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- SwapCoordination ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        remote = self._remote is not None and time.monotonic() - self._remote_seen < self.lock_ttl_s
        return self._holding or remote

    @asynccontextmanager
    async def hold(self, wait_s: float = 0.0) -> AsyncIterator[None]:
        token = f"{self.name}:{uuid.uuid4().hex}"
        ttl_ms = int(self.lock_ttl_s * 1000)
        deadline = time.monotonic() + wait_s
        while not await self.redis.set(self.lock_key, token, nx=True, px=ttl_ms):
            if time.monotonic() >= deadline:
                holder = (await self.redis.get(self.lock_key) or b"?").decode().rsplit(":", 1)[0]
                raise SwapBusy(f"gateway {holder} is rolling out a version")
            await asyncio.sleep(0.25)
        self._holding = True
        renew = asyncio.create_task(self._renew(token, ttl_ms), name="swap-lock-renew")
        try:
            await self._publish("started")
            yield
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            self._holding = False
            with contextlib.suppress(RedisError, OSError):
                await self.redis.eval(_RELEASE, 1, self.lock_key, token)
                await self._publish("ended")

    async def draining(self, replica: Replica) -> None:
        ack_id = next(self._ids)
        self._acks[ack_id] = set()
        try:
            reached = await self._publish("draining", replica=replica.url, ack=ack_id)
            others = max(reached - 1, 0)  # this gateway is subscribed too
            deadline = time.monotonic() + self.drain_timeout_s
            while len(self._acks[ack_id]) < others:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "%s: %d of %d other gateways acked the drain of %s in %.0f s; going on",
                        self.name,
                        len(self._acks[ack_id]),
                        others,
                        replica.name,
                        self.drain_timeout_s,
                    )
                    return
                self._ack_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ack_event.wait(), left)
        finally:
            self._acks.pop(ack_id, None)

    async def swapped(self, replica: Replica, target: SwapTarget) -> None:
        await self._publish("swapped", replica=replica.url, **_target_json(target))

    async def finished(self, target: SwapTarget) -> None:
        await self._publish("finished", **_target_json(target))

    # --- the other gateways' events ----------------------------------------------------------

    async def _publish(self, kind: str, **fields: Any) -> int:
        message = json.dumps({"kind": kind, "from": self.name, **fields})
        return int(await self.redis.publish(self.channel, message))

    async def _renew(self, token: str, ttl_ms: int) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl_s / 3)
            try:
                if not await self.redis.eval(_RENEW, 1, self.lock_key, token, ttl_ms):
                    log.error("%s lost the rolling swap lock mid-swap (expired?)", self.name)
                    return
            except (RedisError, OSError) as exc:
                log.warning("renewing the rolling swap lock failed: %s", exc)

    async def _listen(self) -> None:
        """Apply other gateways' events; resubscribe after a Redis outage."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            try:
                                self._on(json.loads(message["data"]))
                            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                                # one malformed event must not stop this gateway's drains and acks
                                log.warning("ignoring a malformed rolling swap event: %s", exc)
                        if self._away:
                            await self._check_away()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError) as exc:
                log.warning("rolling swap events: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1.0)

    def _on(self, event: dict) -> None:
        sender, kind = event.get("from"), event.get("kind")
        if self.swapper is None:  # still booting: nothing of ours to update, no requests to drain
            if kind == "draining" and sender != self.name:
                self._spawn(self._publish("ack", to=sender, ack=event["ack"]))  # don't hold it up
            return
        if kind == "ack":
            if event.get("to") == self.name and event.get("ack") in self._acks:
                self._acks[event["ack"]].add(sender)
                self._ack_event.set()
            return
        if sender == self.name:
            return
        self._remote, self._remote_seen = sender, time.monotonic()
        replica = self.engine.by_url(event["replica"]) if "replica" in event else None
        if kind == "ended":
            self._remote = None
        elif kind == "draining" and replica is not None:
            replica.in_rotation = False
            self._away[replica.url] = time.monotonic()
            self._spawn(self._ack_drained(replica, sender, event["ack"]))
        elif kind == "swapped" and replica is not None:
            self._away.pop(replica.url, None)
            self.swapper.adopt_replica(replica, _target_of(event))
            replica.in_rotation = True
        elif kind == "finished":
            self.swapper.adopt(_target_of(event))

    async def _ack_drained(self, replica: Replica, to: str, ack_id: int) -> None:
        if not await replica.drained(self.drain_timeout_s):
            log.warning(
                "%s still busy after %.0f s; acking the drain anyway", replica.name, self.drain_timeout_s
            )
        await self._publish("ack", to=to, ack=ack_id)

    async def _check_away(self) -> None:
        """A replica drained by a gateway that no longer holds the lock (it died) comes back."""
        if time.monotonic() - min(self._away.values()) < 1.0 or await self.redis.exists(self.lock_key):
            return
        for url in list(self._away):
            replica = self.engine.by_url(url)
            del self._away[url]
            if replica is not None:
                self._spawn(self._return(replica))

    async def _return(self, replica: Replica) -> None:
        try:
            replica.version = await replica.client.weight_version()
        except Exception as exc:  # noqa: BLE001 - it stays out; its restart path brings it back
            log.error("%s: cannot read its version (%s); it stays out of rotation", replica.name, exc)
            return
        log.warning(
            "the rolling swap that drained %s ended without it; back at %s", replica.name, replica.version
        )
        replica.in_rotation = True

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _target_json(target: SwapTarget) -> dict:
    return {
        "version": target.version,
        "path": str(target.path),
        "checksum": target.checksum,
        "sha256": target.sha256,
    }


def _target_of(event: dict) -> SwapTarget:
    from server.versions.swap import SwapTarget

    return SwapTarget(event["version"], Path(event["path"]), event.get("checksum"), event.get("sha256"))
