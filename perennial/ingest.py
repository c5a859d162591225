"""The ingest process: ``perennial ingest [--consumers N]``.

Persists the Redis ingest stream (interactions and feedback the gateways published) into the
database, without a gateway or an engine: for deployments that run persistence beside the
gateways (set ``PERENNIAL_INGEST_CONSUMER=false`` on the gateways then). Any number of ingest
processes and gateways may consume the same consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from perennial.logs import configure_logging
from server.settings import Settings
from server.storage import connect_redis_for
from store.consumer import StreamConsumer
from store.db import Database, safe_url
from store.streams import IngestStream

log = logging.getLogger(__name__)


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
        redis = await connect_redis_for(settings, stack)
        stream = IngestStream(
            redis,
            prefix=settings.redis_prefix,
            completion_ttl_s=settings.completion_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            maxlen=settings.ingest_stream_maxlen,
        )
        workers = [
            StreamConsumer(
                stream,
                db.sessions,
                batch_size=settings.ingest_batch_size,
                claim_idle_s=settings.ingest_claim_idle_s,
            )
            for _ in range(consumers)
        ]
        for worker in workers:
            worker.start()
            stack.push_async_callback(worker.stop)
        log.info("ingest: %d consumer(s) on %s -> %s", consumers, stream.stream, safe_url(db.url))
        print(f"Perennial ingest consuming {stream.stream} into {safe_url(db.url)}", flush=True)
        await stopped.wait()


def main(settings: Settings, consumers: int = 1) -> None:
    configure_logging(settings.log_level)
    asyncio.run(run_ingest_worker(settings, consumers))
