"""Who may roll weights over the replicas now, and who must hear about it.

:class:`LocalRollouts` is one gateway on its own: a rollout at a time in this process, nobody
else to tell. Several gateways over the same replicas use the Redis one
(``server.versions.redis_rollouts``): a lock held for the whole rollout, and events on a
pub/sub channel that the other gateways apply to their own view of the replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.replicas import Replica
    from server.versions.swap import SwapTarget


class Rollouts(Protocol):
    @property
    def busy(self) -> bool:
        """A rollout holds the lock now (this gateway's, or as far as it knows, another's)."""

    def hold(self) -> AsyncIterator[None]:
        """Async context manager: the right to roll weights; raises SwapError if another holds it."""

    async def draining(self, replica: Replica) -> None:
        """``replica`` leaves rotation for a swap; returns once every gateway stopped sending to it."""

    async def swapped(self, replica: Replica, version: str) -> None:
        """``replica`` holds ``version`` and is back in rotation."""

    async def finished(self, target: SwapTarget) -> None:
        """Every replica holds ``target``: it is the served version."""


class LocalRollouts:
    """One gateway: an asyncio lock, and no one else to tell."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def draining(self, replica: Replica) -> None:
        return None

    async def swapped(self, replica: Replica, version: str) -> None:
        return None

    async def finished(self, target: SwapTarget) -> None:
        return None
