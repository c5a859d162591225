"""The gateway's entrance to the store: record interactions, accept feedback, off the hot path.

With Redis (production): interactions go to the ingest stream through a background publisher
(one MULTI/EXEC per burst); a feedback request is accepted by one atomic Lua call (idempotency,
issued-id check, XADD); stream consumers persist into the database.

Without Redis (embedded default), or while Redis is unreachable: entries go to the in-process
``DirectWriter`` queue, written by one task. Redis failures trip a short circuit breaker
(``redis_retry_s``), so an outage costs one failed call per second, not one per request.
During an outage, items are held in this process's memory until the database has them (the
writer retries forever); nothing accepted is dropped unless the process dies meanwhile.
What the database refuses as data is dead-lettered, never retried forever (``store.ingest``).
``IngestCollector`` reports the stream's backlog and the dead letters to Prometheus.

Is a completion id real, and the caller's? Checked in order: ids this process issued (in
memory, with their caller), Redis markers (ids issued by any gateway, value: the caller, kept
``completion_ttl_s``), the database. Feedback on a completion whose interaction is still in
flight is therefore accepted, never lost or refused; feedback on another caller's completion is
answered like an unknown id (``missing``), so ids of others are not even confirmed to exist.

An Idempotency-Key's record is small: the request's hash and what a replay needs to rebuild the
first answer (``{"created": ...}``; the service derives everything else from the request). It is
kept ``idempotency_ttl_s`` everywhere: in memory (``idempotency_cache`` entries at most), in
Redis (key TTL) and in the database (``prune_idempotency``, every ``prune_every_s``). The
same prune bounds the ingest dead letters (``store.dead_letters``): the newest
``dead_letters_keep``, none older than ``dead_letters_max_age_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from store import queries
from store.consumer import StreamConsumer
from store.db import Database
from store.dead_letters import prune_dead_letters
from store.ingest import INTERACTION, Entry, prune_idempotency
from store.streams import DEFAULT_MAXLEN, IngestStream, idempotency_value
from store.writer import DirectWriter, WriterFull

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class StoreUnavailable(Exception):
    """The database (and Redis) cannot take or answer this request right now (503)."""


@dataclass
class IngestConfig:
    redis_prefix: str = "perennial"
    batch_size: int = 500
    claim_idle_s: float = 30.0
    completion_ttl_s: int = 86_400
    idempotency_ttl_s: int = 86_400
    run_consumer: bool = True
    redis_retry_s: float = 1.0
    issued_cache: int = 200_000  # completion ids remembered in memory
    idempotency_cache: int = 20_000  # small records: a hash and a timestamp each
    prune_every_s: float = 3600.0  # how often expired idempotency rows and old dead letters are deleted
    dead_letters_keep: int = 10_000  # newest ingest dead letters kept (store.dead_letters)
    dead_letters_max_age_s: float = 30 * 86_400.0
    stream_maxlen: int = DEFAULT_MAXLEN  # XADD MAXLEN ~ (store.streams)
    backlog_every_s: float = 5.0  # how often the stream's backlog is read for the metrics


@dataclass
class IdempotencyRequest:
    """An Idempotency-Key, the request's hash, and ``response``: what a replay needs to answer
    again (small: ``{"created": ...}``; rows of older versions hold the whole first answer)."""

    caller: str
    key: str
    request_hash: str
    response: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {
            "caller": self.caller,
            "key": self.key,
            "request_hash": self.request_hash,
            "response": self.response,
            "created_at": time.time(),
        }


@dataclass
class Acceptance:
    """accepted | replay (``response`` is the first answer) | conflict | missing (ids)."""

    status: str
    response: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)


class _Bounded(dict):
    """A dict that forgets its oldest keys beyond ``capacity`` (insertion order)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.capacity:
            del self[next(iter(self))]


class _Expiring:
    """At most ``capacity`` entries, each forgotten at its deadline (wall clock), oldest first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: dict[Any, tuple[float, Any]] = {}

    def put(self, key: Any, value: Any, deadline: float) -> None:
        self._items.pop(key, None)
        self._items[key] = (deadline, value)
        now = time.time()
        while self._items:
            first = next(iter(self._items))
            if len(self._items) <= self.capacity and self._items[first][0] > now:
                break
            del self._items[first]

    def get(self, key: Any) -> Any | None:
        found = self._items.get(key)
        return found[1] if found is not None and found[0] > time.time() else None

    def __len__(self) -> int:
        return len(self._items)


class IngestSink:
    """Records interactions and accepts feedback for one gateway process."""

    def __init__(self, db: Database, redis: Redis | None, config: IngestConfig | None = None):
        self.db = db
        self.config = config or IngestConfig()
        c = self.config
        self.writer = DirectWriter(db.sessions, batch_size=c.batch_size)
        self.stream = (
            None
            if redis is None
            else IngestStream(
                redis,
                prefix=c.redis_prefix,
                completion_ttl_s=c.completion_ttl_s,
                idempotency_ttl_s=c.idempotency_ttl_s,
                maxlen=c.stream_maxlen,
            )
        )
        self.consumer: StreamConsumer | None = None
        self.backlog: dict[str, int | None] = {}
        self._backlog_task: asyncio.Task | None = None
        self._prune_task: asyncio.Task | None = None
        self._issued = _Bounded(c.issued_cache)
        self._idempotency = _Expiring(c.idempotency_cache)
        self._outbox: asyncio.Queue[dict] = asyncio.Queue(maxsize=100_000)
        self._publisher: asyncio.Task | None = None
        self._redis_down_until = 0.0
        self.fallbacks = 0
        self.dropped = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.writer.start()
        self._prune_task = asyncio.create_task(self._prune_loop(), name="idempotency-prune")
        if self.stream is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):  # Redis down at start: the consumer waits
            await self.stream.ensure_group()
        self._publisher = asyncio.create_task(self._publish_loop(), name="ingest-publisher")
        self._backlog_task = asyncio.create_task(self._watch_backlog(), name="ingest-backlog")
        if self.config.run_consumer:
            self.consumer = StreamConsumer(
                self.stream,
                self.db.sessions,
                batch_size=self.config.batch_size,
                claim_idle_s=self.config.claim_idle_s,
            )
            self.consumer.start()

    async def flush(self) -> None:
        """Wait until this process has handed everything on (to Redis or the database)."""
        await self._outbox.join()
        await self.writer.flush()

    async def close(self) -> None:
        """Publish what is queued, stop the consumer, write what the writer holds."""
        for task in (self._backlog_task, self._prune_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 10)
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if self.consumer is not None:
            await self.consumer.stop()
        await self.writer.stop()

    async def _watch_backlog(self) -> None:
        while True:
            with contextlib.suppress(*REDIS_ERRORS):
                self.backlog = await self.stream.backlog()
            await asyncio.sleep(self.config.backlog_every_s)

    async def _prune_loop(self) -> None:
        while True:
            await self.prune()
            await asyncio.sleep(self.config.prune_every_s)

    async def prune(self) -> None:
        """Delete expired Idempotency-Key records and the dead letters past their bounds."""
        c, now = self.config, datetime.now(UTC)
        try:
            async with self.db.sessions() as session:
                deleted = await prune_idempotency(
                    session, before=now - timedelta(seconds=c.idempotency_ttl_s)
                )
                letters = await prune_dead_letters(
                    session,
                    keep=c.dead_letters_keep,
                    before=now - timedelta(seconds=c.dead_letters_max_age_s),
                )
                await session.commit()
            if deleted:
                log.info("pruned %d expired Idempotency-Key records", deleted)
            if letters:
                log.info(
                    "pruned %d ingest dead letters (past the newest %d or too old)",
                    letters,
                    c.dead_letters_keep,
                )
        except (SQLAlchemyError, OSError) as exc:  # the database down: next time
            log.warning("idempotency and dead-letter prune failed: %s", type(exc).__name__)

    # --- Redis circuit breaker -----------------------------------------------------------------
    def _redis_usable(self) -> bool:
        return self.stream is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning(
                "Redis unreachable (%s: %s); writing directly to the database for %.1f s",
                type(exc).__name__,
                exc,
                self.config.redis_retry_s,
            )
        self._redis_down_until = time.monotonic() + self.config.redis_retry_s
        self.fallbacks += 1

    # --- interactions --------------------------------------------------------------------------
    def record_interaction(self, row: dict[str, Any]) -> None:
        """Queue one interaction row (never blocks, never raises for a full queue)."""
        self._issued.put(row["id"], row["caller"])
        if self.stream is not None:
            try:
                self._outbox.put_nowait(row)
                return
            except asyncio.QueueFull:
                pass
        self._submit(Entry(INTERACTION, row))

    def _submit(self, entry: Entry) -> None:
        try:
            self.writer.submit(entry)
        except WriterFull:
            self.dropped += 1
            log.error("write queue full: dropped an interaction (database down for long)")

    async def _publish_loop(self) -> None:
        while True:
            rows = [await self._outbox.get()]
            while len(rows) < 256 and not self._outbox.empty():
                rows.append(self._outbox.get_nowait())
            try:
                await self._publish(rows)
            finally:
                for _ in rows:
                    self._outbox.task_done()

    async def _publish(self, rows: list[dict]) -> None:
        if self._redis_usable():
            try:
                await self.stream.publish_interactions(rows)
                return
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
        for row in rows:  # an unknown outcome is fine: the write is idempotent
            self._submit(Entry(INTERACTION, row))

    # --- feedback ------------------------------------------------------------------------------
    async def missing_completions(self, ids: list[str], *, caller: str | None = None) -> list[str]:
        """The ids among ``ids`` that no gateway issued, or (with ``caller``) issued to someone
        else (404 material either way).

        Raises:
            StoreUnavailable: the database could not be asked.
        """
        unknown = [cid for cid in dict.fromkeys(ids) if not self._known(cid, caller)]
        if unknown and self._redis_usable():
            try:
                owners = await self._markers(unknown)
                unknown = [
                    cid
                    for cid, owner in zip(unknown, owners, strict=True)
                    if owner is None or (caller is not None and owner != caller)
                ]
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
        return await self._missing_in_db(unknown, caller)

    def _known(self, cid: str, caller: str | None) -> bool:
        """Issued by this process (to ``caller``, when given)."""
        owner = self._issued.get(cid)
        return owner is not None and (caller is None or owner == caller)

    async def _markers(self, ids: list[str]) -> list[str | None]:
        async with self.stream.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.get(self.stream.marker(cid))
            return [None if v is None else v.decode() for v in await pipe.execute()]

    async def _missing_in_db(self, ids: list[str], caller: str | None) -> list[str]:
        if not ids:
            return []
        try:
            async with self.db.sessions() as session:
                found = await queries.existing_completion_ids(session, ids=ids, caller=caller)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        return [cid for cid in ids if cid not in found]

    def _remember(self, idem: IdempotencyRequest, request_hash: str, response: dict) -> None:
        created = response.get("created")  # the first answer's time (its whole body in old records)
        start = created if isinstance(created, int | float) else time.time()
        self._idempotency.put((idem.caller, idem.key), (request_hash, response), start + self._idem_ttl)

    @property
    def _idem_ttl(self) -> float:
        return float(self.config.idempotency_ttl_s)

    def _replayed(self, idem: IdempotencyRequest, request_hash: str, response: dict) -> Acceptance:
        self._remember(idem, request_hash, response)
        if request_hash != idem.request_hash:
            return Acceptance("conflict")
        return Acceptance("replay", response)

    async def accept_feedback(self, entry: Entry, idem: IdempotencyRequest | None) -> Acceptance:
        """Accept one feedback request (already validated) for durable storage.

        Args:
            entry: the feedback entry (items, with ids and their ``caller`` already assigned).
            idem: the request's Idempotency-Key record, or None.

        Returns:
            accepted; replay (same key, same body: the first ``idem.response``); conflict (same
            key, another body); missing (completion ids nobody issued to the items' caller;
            nothing stored).

        Raises:
            StoreUnavailable: neither Redis nor the database can take it now.
        """
        if idem is not None and (found := self._idempotency.get((idem.caller, idem.key))) is not None:
            return self._replayed(idem, *found)
        items = entry.data["items"]
        caller = items[0]["caller"]  # one request, one caller
        ids = list(dict.fromkeys(item["completion_id"] for item in items))
        foreign = [cid for cid in ids if self._issued.get(cid, caller) != caller]
        if foreign:  # issued here to another caller: the same answer as an unknown id
            return Acceptance("missing", missing=foreign)
        unchecked = [cid for cid in ids if not self._known(cid, caller)]
        if self._redis_usable():
            try:
                result = await self._accept_redis(entry, idem, unchecked)
                if result is not None:
                    return result
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
        return await self._accept_direct(entry, idem, unchecked)

    async def _accept_redis(
        self, entry: Entry, idem: IdempotencyRequest | None, unchecked: list[str]
    ) -> Acceptance | None:
        key = self.stream.idempotency(idem.caller, idem.key) if idem else None
        value = idempotency_value(idem.request_hash, idem.response) if idem else ""
        reply = await self.stream.accept_feedback(entry, idem_key=key, idem_value=value, check_ids=unchecked)
        if reply.status == "missing":
            # Markers expire after completion_ttl_s; by then the interaction is in the DB.
            missing = await self._missing_in_db(reply.missing, entry.data["items"][0]["caller"])
            if missing:
                return Acceptance("missing", missing=missing)
            reply = await self.stream.accept_feedback(entry, idem_key=key, idem_value=value, check_ids=[])
        if reply.status == "replay":
            stored = json.loads(reply.value)
            return self._replayed(idem, stored["hash"], stored["response"])
        if idem is not None:
            self._remember(idem, idem.request_hash, idem.response)
        return Acceptance("accepted", idem.response if idem else None)

    async def _accept_direct(
        self, entry: Entry, idem: IdempotencyRequest | None, unchecked: list[str]
    ) -> Acceptance:
        missing = await self._missing_in_db(unchecked, entry.data["items"][0]["caller"])
        if missing:
            return Acceptance("missing", missing=missing)
        if idem is not None:
            stored = await self._stored_idempotency(idem)
            if stored is not None:
                return self._replayed(idem, stored.request_hash, stored.response)
            # No await from here on: a concurrent twin either saw our record or we see its.
            if (found := self._idempotency.get((idem.caller, idem.key))) is not None:
                return self._replayed(idem, *found)
        try:
            self.writer.submit(entry)
        except WriterFull as exc:
            raise StoreUnavailable("the database write queue is full") from exc
        if idem is not None:
            self._remember(idem, idem.request_hash, idem.response)
        return Acceptance("accepted", idem.response if idem else None)

    async def _stored_idempotency(self, idem: IdempotencyRequest):
        try:
            async with self.db.sessions() as session:
                before = datetime.now(UTC) - timedelta(seconds=self.config.idempotency_ttl_s)
                return await queries.get_idempotency(session, caller=idem.caller, key=idem.key, after=before)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "redis" if self.stream is not None else "direct",
            "redis_up": self._redis_usable() if self.stream is not None else None,
            "fallbacks": self.fallbacks,
            "dropped": self.dropped,
            "writer": {
                "pending": self.writer.pending,
                "written": self.writer.written,
                "failures": self.writer.failures,
                "refused": self.writer.refused,
            },
            "consumer": self.consumer.stats() if self.consumer else None,
            "stream": self.backlog or None,
        }


class IngestCollector:
    """Prometheus gauges of one sink's ingest: ``registry.register(IngestCollector(sink))``.

    The stream's numbers are those of the last ``backlog`` read (every ``backlog_every_s``);
    dead letters and the writer's queue are this process's own.
    """

    def __init__(self, sink: IngestSink):
        self.sink = sink

    def collect(self):
        sink, backlog = self.sink, self.sink.backlog
        dead = sink.writer.refused + (sink.consumer.dead if sink.consumer else 0)
        gauges = [
            (
                "perennial_ingest_dead_letters",
                "Entries this process dead-lettered (the database refused them).",
                dead,
            ),
            (
                "perennial_ingest_writer_pending",
                "Entries queued for a direct database write.",
                sink.writer.pending,
            ),
            ("perennial_ingest_stream_length", "Entries in the ingest stream.", backlog.get("length")),
            (
                "perennial_ingest_stream_lag",
                "Stream entries not yet read by the consumer group.",
                backlog.get("lag"),
            ),
            (
                "perennial_ingest_stream_pending",
                "Stream entries read but not yet stored.",
                backlog.get("pending"),
            ),
            (
                "perennial_ingest_dead_stream_length",
                "Entries in the dead-letter stream.",
                backlog.get("dead"),
            ),
        ]
        for name, help_, value in gauges:
            if value is not None:
                family = GaugeMetricFamily(name, help_)
                family.add_metric([], float(value))
                yield family

    def describe(self):
        return []
