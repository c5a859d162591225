"""The store component of the gateway's lifespan: database, migrations, Redis, ingest.

``start_store`` opens the database (SQLite file by default, Postgres by URL), runs
``alembic upgrade head``, connects Redis when ``PERENNIAL_REDIS_URL`` is set, starts the
ingest sink (publisher, stream consumer, direct writer) and registers every cleanup on the
lifespan's exit stack. Routes reach the results through the dependencies of :mod:`server.deps`
(``DB``, ``Ingest``); the chat and feedback services are built on the sink by their own slices.
``perennial ingest`` (``perennial/ingest.py``) runs the same stream consumers
without a gateway.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from fastapi import FastAPI
from redis.exceptions import RedisError

from server.settings import Settings
from store.db import Database, safe_url
from store.sink import IngestCollector, IngestConfig, IngestSink
from store.streams import connect as connect_redis

log = logging.getLogger(__name__)


async def connect_redis_for(settings: Settings, stack: AsyncExitStack):
    if settings.redis_url is None:
        return None
    redis = connect_redis(settings.redis_url.get_secret_value())
    stack.push_async_callback(redis.aclose)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:  # start anyway: writes fall back to the database
        log.warning("Redis is not reachable at start (%s); falling back to direct writes", exc)
    return redis


async def start_store(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Open the store: ``app.state.db`` and ``app.state.ingest``.

    Args:
        app: the gateway app.
        settings: the gateway settings.
        stack: the lifespan's exit stack (cleanups run in reverse order).
    """
    db = Database.connect(settings.resolved_database_url)
    stack.push_async_callback(db.close)
    await db.migrate()
    log.info("store: %s (migrated to head)", safe_url(db.url))
    redis = await connect_redis_for(settings, stack)
    config = IngestConfig(
        redis_prefix=settings.redis_prefix,
        batch_size=settings.ingest_batch_size,
        claim_idle_s=settings.ingest_claim_idle_s,
        completion_ttl_s=settings.completion_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        run_consumer=settings.ingest_consumer,
        stream_maxlen=settings.ingest_stream_maxlen,
        dead_letters_keep=settings.ingest_dead_letters_keep,
        dead_letters_max_age_s=settings.ingest_dead_letters_max_age_days * 86_400,
    )
    sink = IngestSink(db, redis, config)
    await sink.start()
    app.state.metrics.registry.register(IngestCollector(sink))  # backlog, lag, dead letters
    stack.push_async_callback(sink.close)
    app.state.db = db
    app.state.ingest = sink
