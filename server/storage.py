"""The store component of the gateway's lifespan: database, migrations, Redis, ingest.

``start_store`` opens the database (SQLite file by default, Postgres by URL), runs
``alembic upgrade head``, connects Redis when ``PERENNIAL_REDIS_URL`` is set, starts the
ingest sink (publisher, stream consumer, direct writer) and registers every cleanup on the
lifespan's exit stack. Routes reach the results through ``app.state``: ``db``, ``ingest``,
``feedback``.

``run_ingest_worker`` is ``perennial ingest``: stream consumers without a gateway, for
deployments that run persistence beside the gateways (set ``PERENNIAL_INGEST_CONSUMER=false``
on the gateways then). Any number of workers and gateways may consume the same group.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from fastapi import FastAPI
from redis.exceptions import RedisError

from server.feedback import FeedbackService
from server.recorder import StoreRecorder
from server.serving import NullRecorder, Recorder
from server.settings import Settings
from store.consumer import StreamConsumer
from store.db import Database, safe_url
from store.sink import IngestConfig, IngestSink
from store.streams import IngestStream
from store.streams import connect as connect_redis

log = logging.getLogger(__name__)


async def _redis(settings: Settings, stack: AsyncExitStack):
    if settings.redis_url is None:
        return None
    redis = connect_redis(settings.redis_url.get_secret_value())
    stack.push_async_callback(redis.aclose)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:  # start anyway: writes fall back to the database
        log.warning("Redis is not reachable at start (%s); falling back to direct writes", exc)
    return redis


async def start_store(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> Recorder:
    """Open the store and return the interaction recorder for the chat service.

    Args:
        app: the gateway app (``app.state.db``, ``.ingest``, ``.feedback`` are set).
        settings: the gateway settings.
        stack: the lifespan's exit stack (cleanups run in reverse order).

    Returns:
        A ``StoreRecorder``, or a ``NullRecorder`` when ``PERENNIAL_LOG_INTERACTIONS=false``.
    """
    db = Database.connect(settings.resolved_database_url)
    stack.push_async_callback(db.close)
    await db.migrate()
    log.info("store: %s (migrated to head)", safe_url(db.url))
    redis = await _redis(settings, stack)
    config = IngestConfig(
        redis_prefix=settings.redis_prefix,
        batch_size=settings.ingest_batch_size,
        claim_idle_s=settings.ingest_claim_idle_s,
        completion_ttl_s=settings.completion_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        run_consumer=settings.ingest_consumer,
    )
    sink = IngestSink(db, redis, config)
    await sink.start()
    stack.push_async_callback(sink.close)
    app.state.db = db
    app.state.ingest = sink
    app.state.feedback = FeedbackService(settings, sink)
    return StoreRecorder(sink) if settings.log_interactions else NullRecorder()


async def run_ingest_worker(settings: Settings, consumers: int = 1) -> None:
    """Persist the Redis ingest stream until SIGINT/SIGTERM (``perennial ingest``).

    Args:
        settings: needs ``redis_url``; the database is ``resolved_database_url``.
        consumers: consumer tasks in this process (each its own name in the group).
    """
    if settings.redis_url is None:
        raise ValueError("perennial ingest needs PERENNIAL_REDIS_URL")
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    async with AsyncExitStack() as stack:
        db = Database.connect(settings.resolved_database_url)
        stack.push_async_callback(db.close)
        await db.migrate()
        redis = await _redis(settings, stack)
        stream = IngestStream(redis, prefix=settings.redis_prefix,
                              completion_ttl_s=settings.completion_ttl_s,
                              idempotency_ttl_s=settings.idempotency_ttl_s)  # fmt: skip
        workers = [StreamConsumer(stream, db.sessions, batch_size=settings.ingest_batch_size,
                                  claim_idle_s=settings.ingest_claim_idle_s)
                   for _ in range(consumers)]  # fmt: skip
        for worker in workers:
            worker.start()
            stack.push_async_callback(worker.stop)
        log.info("ingest: %d consumer(s) on %s -> %s", consumers, stream.stream, safe_url(db.url))
        print(f"Perennial ingest consuming {stream.stream} into {safe_url(db.url)}", flush=True)
        await stopped.wait()
