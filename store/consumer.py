"""The stream consumer: persists ``<p>:ingest`` into the database, exactly once in effect.

Delivery is at least once (Redis consumer group); the write is idempotent (insert-or-ignore on
completion id / feedback id / idempotency key), so every entry ends up stored exactly once:

1. ``XREADGROUP >`` a batch (up to ``batch_size``), write it in one transaction, then ``XACK`` +
   ``XDEL`` it (acked entries are deleted, so the stream stays as long as the backlog).
2. A database error keeps the batch pending; it is retried with backoff until the database
   accepts it. While retrying, the consumer re-claims its own batch (``XCLAIM``) so other
   consumers do not take it over as abandoned.
3. Every ``claim_idle_s / 2`` seconds, ``XAUTOCLAIM`` takes entries pending longer than
   ``claim_idle_s`` from consumers that died mid-batch, and persists them like any batch.
4. A batch the database refuses as invalid data is written entry by entry; entries refused on
   their own go to the ``ingest_dead_letters`` table and ``<p>:ingest:dead`` with their error,
   and are acked (a poison entry must not stall the stream). An entry that cannot even be
   decoded is dead-lettered the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.ingest import DeadLetter, Entry, persist_batch
from store.streams import IngestStream

log = logging.getLogger(__name__)


def consumer_name() -> str:
    """Unique per process: a restarted gateway is a new consumer; its predecessor's pending
    entries are reclaimed by XAUTOCLAIM."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamConsumer:
    """One consumer of the ingest group, run as an asyncio task."""

    def __init__(
        self,
        stream: IngestStream,
        sessions: async_sessionmaker[AsyncSession],
        *,
        name: str | None = None,
        batch_size: int = 500,
        claim_idle_s: float = 30.0,
        block_ms: int = 1000,
        max_backoff_s: float = 2.0,
    ):
        self.stream = stream
        self.redis = stream.redis
        self.sessions = sessions
        self.name = name or consumer_name()
        self.batch_size = batch_size
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.block_ms = block_ms
        self.max_backoff_s = max_backoff_s
        self.persisted = 0
        self.claimed = 0
        self.dead = 0
        self.failures = 0
        self.last_error: str | None = None
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"stream-consumer-{self.name}")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand (bounded), then leave the group if nothing is pending."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        with contextlib.suppress(RedisError, OSError):
            pending = await self.redis.xpending_range(
                self.stream.stream, self.stream.group, "-", "+", 1, consumername=self.name
            )
            if not pending:
                await self.redis.xgroup_delconsumer(self.stream.stream, self.stream.group, self.name)

    async def run(self) -> None:
        """Consume until stopped; Redis outages are waited out with backoff."""
        backoff = 0.05
        while not self._stopping:
            try:
                await self.stream.ensure_group()
                while not self._stopping:
                    batch = await self._next_batch()
                    if batch:
                        await self._store(batch)
                    backoff = 0.05
            except (RedisError, OSError) as exc:
                self._note(exc)
                log.warning("stream consumer: Redis error (%s); retrying in %.2f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _next_batch(self) -> list[tuple[str, Entry | None]]:
        if time.monotonic() >= self._next_claim:
            claimed = await self._claim_abandoned()
            if claimed:
                return claimed
        try:
            reply = await self.redis.xreadgroup(
                self.stream.group,
                self.name,
                {self.stream.stream: ">"},
                count=self.batch_size,
                block=self.block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence)
                await self.stream.ensure_group()
                return []
            raise
        return [(i.decode(), _decode(f)) for _, items in reply or [] for i, f in items]

    async def _claim_abandoned(self) -> list[tuple[str, Entry | None]]:
        """Entries idle longer than ``claim_idle_s`` in any consumer's pending list.

        One call scans part of the pending list; the scan goes on at the next batch until the
        cursor wraps, then rests for ``claim_idle_s / 2``.
        """
        cursor, items, _deleted = await self.redis.xautoclaim(
            self.stream.stream,
            self.stream.group,
            self.name,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.batch_size,
        )
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        if self._claim_cursor == "0-0":
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
        if items:
            self.claimed += len(items)
            log.info("stream consumer %s reclaimed %d abandoned entries", self.name, len(items))
        return [(i.decode(), _decode(f)) for i, f in items]

    async def _store(self, batch: list[tuple[str, Entry | None]]) -> None:
        """Persist the batch (retrying until the database accepts it), then ack + delete."""
        ids = [entry_id for entry_id, _ in batch]
        entries = [entry for _, entry in batch if entry is not None]
        backoff = 0.05
        while True:
            try:
                refused = await self._persist(entries)
                break
            except Exception as exc:  # database unreachable or failing: keep the batch
                if isinstance(exc, RedisError):
                    raise
                self._note(exc)
                log.warning(
                    "stream consumer: database write of %d entries failed (%s); retrying in %.2f s",
                    len(entries),
                    self.last_error,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                await self._keep_claimed(ids)
        if refused:
            self.dead += len(refused)
            await self.stream.dead_letter(refused)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream.stream, self.stream.group, *ids)
            pipe.xdel(self.stream.stream, *ids)
            await pipe.execute()
        self.persisted += len(entries)

    async def _persist(self, entries: list[Entry]) -> list[DeadLetter]:
        return await persist_batch(self.sessions, entries)

    async def _keep_claimed(self, ids: list[str]) -> None:
        """Reset the idle time of our own pending batch while we retry (we are alive)."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.xclaim(self.stream.stream, self.stream.group, self.name, 0, ids, justid=True)

    def _note(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def stats(self) -> dict:
        return {
            "name": self.name,
            "persisted": self.persisted,
            "claimed": self.claimed,
            "dead": self.dead,
            "failures": self.failures,
            "last_error": self.last_error,
        }


def _decode(fields: dict | None) -> Entry | None:
    # A pending entry deleted from the stream (already stored by another consumer) has no fields.
    if not fields:
        return None
    try:
        return Entry.decode(fields)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        # Kept as an entry of no known kind: persist refuses it as data, so it is dead-lettered.
        raw = {
            str(k): (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
            for k, v in fields.items()
        }
        log.error("stream consumer: undecodable entry (%s)", exc)
        return Entry("undecodable", {"fields": raw})
