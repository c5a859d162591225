"""Direct writes without Redis: one writer task drains an in-process queue in batches.

Used when no Redis is configured (the embedded SQLite default), and as the fallback while Redis
is unreachable. ``submit`` never waits: the request path only appends to a queue. The writer
task takes whatever is queued (up to ``batch_size`` entries), writes it in one transaction with
``store.ingest.persist`` and retries the same batch with backoff until the database accepts it,
so a database outage delays writes but loses nothing that was accepted, as long as this process
lives. ``stop`` drains the queue before returning (bounded by a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.ingest import Entry, persist_batch

log = logging.getLogger(__name__)


class WriterFull(Exception):
    """The queue is at capacity (the database has been unreachable for a long while)."""


class DirectWriter:
    """A bounded queue of entries and the single task that writes them."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch_size: int = 500,
        max_queue: int = 200_000,
        max_backoff_s: float = 2.0,
    ):
        self.sessions = sessions
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self._queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task | None = None
        self.written = 0
        self.failures = 0
        self.refused = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-direct-writer")

    def submit(self, entry: Entry) -> None:
        """Queue one entry (never blocks). Raises WriterFull at capacity."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull as exc:
            raise WriterFull("the database write queue is full") from exc

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._queue.join()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (up to ``timeout_s``), then end the writer task."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        if self.pending:
            log.error("stopping with %d entries not written (database unreachable)", self.pending)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: list[Entry]) -> None:
        """Persist ``batch``, retrying with backoff until it succeeds (or the task is cancelled).

        A batch refused as invalid data is written entry by entry; entries refused on their own
        go to ``ingest_dead_letters`` with their error (``store.ingest.persist_batch``).
        """
        backoff = 0.05
        while True:
            try:
                self.refused += len(await persist_batch(self.sessions, batch))
            except Exception as exc:  # unreachable / failing database: keep the batch, retry
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning(
                    "database write of %d entries failed (%s); retrying in %.2f s",
                    len(batch),
                    self.last_error,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self.written += len(batch)
            return
