"""The learner yields the CPU to chats: before each population member, wait while chats run.

On a small CPU the serving engine and the learner engine share the cores; a member evaluated
while a chat is decoding slows that chat down. So the learner checks, before each member, how
many chats the gateway has in flight (a callable the composition root passes in; 0 when the
learner runs in its own process and no such signal exists) and waits while there are any, up
to ``max_wait_s`` per member, so that a steady stream of chats cannot starve the learner.
Waiting only moves work in time: the round computes exactly the same thing.

>>> import asyncio
>>> busy = iter([2, 1, 0])
>>> asyncio.run(ChatYield(lambda: next(busy), max_wait_s=1.0, poll_s=0.0)())
True
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ChatYield:
    """An awaitable hook for ``run_es(before_member=...)``."""

    def __init__(self, in_flight: Callable[[], int], *, max_wait_s: float, poll_s: float = 0.02):
        self.in_flight = in_flight
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self.waited_s = 0.0  # in all, since this hook was made

    async def __call__(self) -> bool:
        """Wait while chats are in flight (at most ``max_wait_s``); True if none is left."""
        started = time.perf_counter()
        deadline = started + self.max_wait_s
        try:
            while self.in_flight() > 0:
                if time.perf_counter() >= deadline:
                    return False
                await asyncio.sleep(self.poll_s)
            return True
        finally:
            self.waited_s += time.perf_counter() - started
