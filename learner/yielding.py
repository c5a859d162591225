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
import contextlib
import logging
import math
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


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


class ChatGuard:
    """Freeze the learner engine's scheduler while the gateway serves chats, step by step.

    :class:`ChatYield` can only wait *between* members; a member is ~2 s of prefill and decode,
    so a chat that arrives inside one shares the cores with it for the rest of it. This guard
    watches the same in-flight count every ``poll_s`` and, while it is above 0, pauses the
    learner engine with vLLM's ``/pause?mode=keep``: the engine finishes the step it is in
    (a decode step, or a whole prefill: vLLM's CPU default takes up to 2,048 prompt tokens, a
    member's 16 prompts, in one step), then schedules nothing; its requests stay queued with their KV cache
    and go on at ``/resume``. Nothing is recomputed or dropped, so the round's numbers are the
    same (only later). Weight loads and updates are RPCs, not scheduled steps: they still run.

    So that a steady stream of chats cannot starve a round, one pause lasts at most
    ``max_pause_s``, and after a resume the learner runs at least ``min_run_s`` before the next
    pause. ``paused_s`` and ``pauses`` count what it did.

    Use it as an async context manager around the learner's work; leaving resumes the engine.
    """

    def __init__(
        self,
        in_flight: Callable[[], int],
        engine_client: object,
        *,
        max_pause_s: float,
        min_run_s: float,
        poll_s: float = 0.01,
    ):
        self.in_flight = in_flight
        self.client = engine_client
        self.max_pause_s = max_pause_s
        self.min_run_s = min_run_s
        self.poll_s = poll_s
        self.paused_s = 0.0
        self.pauses = 0
        self._paused_at: float | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> ChatGuard:
        self._task = asyncio.create_task(self._watch(), name="perennial-chat-guard")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._resume()
        except Exception as exc:  # noqa: BLE001 - e.g. the engine died: the round's own error wins
            log.warning("chat guard could not resume the engine: %s: %s", type(exc).__name__, exc)

    async def _watch(self) -> None:
        resumed_at = -math.inf
        try:
            while True:
                now = time.perf_counter()
                if self._paused_at is None:
                    if self.in_flight() > 0 and now - resumed_at >= self.min_run_s:
                        await self.client.pause("keep")  # type: ignore[attr-defined]
                        self._paused_at = time.perf_counter()
                        self.pauses += 1
                elif self.in_flight() == 0 or now - self._paused_at >= self.max_pause_s:
                    await self._resume()
                    resumed_at = time.perf_counter()
                await asyncio.sleep(self.poll_s)
        except Exception as exc:  # noqa: BLE001 - guarding is best effort; the round goes on
            log.warning("chat guard stopped: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(Exception):
                await self._resume()

    async def _resume(self) -> None:
        if self._paused_at is None:
            return
        paused_at, self._paused_at = self._paused_at, None
        try:
            await self.client.resume()  # type: ignore[attr-defined]
        finally:
            self.paused_s += time.perf_counter() - paused_at
