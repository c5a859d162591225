"""Who may roll weights over the replicas now, and who must hear about it.

:class:`LocalCoordination` is one gateway on its own: a rolling swap at a time in this process, nobody
else to tell. Several gateways over the same replicas use the Redis one
(``server.versions.redis_coordination``): a lock held for the whole rolling swap, and events on a
pub/sub channel that the other gateways apply to their own view of the replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.replicas import Replica
    from server.versions.swap import HotSwapper, SwapTarget


class SwapBusy(RuntimeError):
    """Another rolling swap holds the lock; nothing was changed."""


class SwapCoordination(Protocol):
    @property
    def busy(self) -> bool:
        """A rolling swap holds the lock now (this gateway's, or as far as it knows, another's)."""

    def attach(self, swapper: HotSwapper) -> None:
        """The swapper whose view other gateways' rolling swaps update."""

    def hold(self, wait_s: float = 0.0) -> AsyncIterator[None]:
        """Async context manager: the right to roll weights, waiting up to ``wait_s`` for it.

        Raises SwapBusy if another rolling swap still holds it then.
        """

    async def draining(self, replica: Replica) -> None:
        """``replica`` leaves rotation for a swap; returns once every gateway stopped sending to it."""

    async def swapped(self, replica: Replica, target: SwapTarget) -> None:
        """``replica`` holds ``target`` and is back in rotation."""

    async def finished(self, target: SwapTarget) -> None:
        """Every replica holds ``target``: it is the served version."""


class LocalCoordination:
    """One gateway: an asyncio lock, and no one else to tell."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def attach(self, swapper: HotSwapper) -> None:
        return None

    @asynccontextmanager
    async def hold(self, wait_s: float = 0.0) -> AsyncIterator[None]:
        # One process: a second rolling swap waits for the first (the service answers 409 before
        # it gets here when one is running).
        async with self._lock:
            yield

    async def draining(self, replica: Replica) -> None:
        return None

    async def swapped(self, replica: Replica, target: SwapTarget) -> None:
        return None

    async def finished(self, target: SwapTarget) -> None:
        return None
