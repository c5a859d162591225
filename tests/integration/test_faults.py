"""Faults at the store level, with private Redis / Postgres instances that the tests stop:
Redis stopped while interactions and feedback keep arriving; Postgres briefly unavailable with
and without Redis. In every case each accepted item ends up in the database exactly once."""

from __future__ import annotations

import asyncio
import time

import pytest

from store.db import Database
from store.sink import IngestConfig, IngestSink, StoreUnavailable
from store.streams import connect
from tests.integration.test_streams import counts, drained, wait_drained, wait_for
from tests.support import rows


async def traffic(sink: IngestSink, seconds: float, accepted: list[str]) -> None:
    """Interactions and feedback for ``seconds``; ``accepted`` gets each accepted completion."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cid = rows.completion_id()
        sink.record_interaction(rows.interaction_row(cid))
        result = await sink.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)
        assert result.status == "accepted"
        accepted.append(cid)
        await asyncio.sleep(0.002)


async def test_redis_stopped_while_traffic_keeps_arriving(pg_url, private_redis):
    db, redis = Database.connect(pg_url), connect(private_redis.url)
    sink = IngestSink(db, redis, IngestConfig(redis_prefix="faults", claim_idle_s=0.5, redis_retry_s=0.2))
    await sink.start()
    accepted: list[str] = []
    await traffic(sink, 1.0, accepted)
    private_redis.stop()
    await traffic(sink, 1.5, accepted)  # Redis down: the direct writer takes everything
    private_redis.start()
    await traffic(sink, 1.0, accepted)
    await sink.flush()
    n = len(accepted)
    await wait_for(db, accepted, (n, n))
    await wait_drained(sink.stream)  # what was in Redis at the stop was stored too (AOF)
    assert sink.fallbacks > 0 and sink.writer.written > 0  # both paths were really used
    await sink.close()
    await redis.aclose()
    await db.close()


@pytest.mark.parametrize("mode", ["redis", "direct"])
async def test_postgres_briefly_unavailable(private_postgres, redis_prefix, mode):
    from harness.stores import REDIS_URL

    db = Database.connect(private_postgres.url)
    redis = connect(REDIS_URL) if mode == "redis" else None
    sink = IngestSink(db, redis, IngestConfig(redis_prefix=redis_prefix, claim_idle_s=0.5))
    await sink.start()
    accepted: list[str] = []
    await traffic(sink, 0.5, accepted)
    private_postgres.stop()
    try:
        await traffic(sink, 1.5, accepted)  # ids this gateway issued: accepted without the DB
        with pytest.raises(StoreUnavailable):  # an id only the DB could vouch for: 503, not lost
            await sink.accept_feedback(rows.feedback(rows.feedback_row("chatcmpl-other")), None)
        await asyncio.sleep(0.5)
        assert (await counts_or_none(db, accepted)) is None  # really down
    finally:
        private_postgres.start()
    await traffic(sink, 0.5, accepted)
    await sink.flush()
    n = len(accepted)
    await wait_for(db, accepted, (n, n), timeout=30)
    if mode == "redis":
        await wait_drained(sink.stream)
        assert sink.consumer.failures > 0  # it did retry through the outage
        assert await drained(sink.stream) == (0, 0)
    else:
        assert sink.writer.failures > 0
    await sink.close()
    if redis is not None:
        await redis.aclose()
    await db.close()


async def counts_or_none(db: Database, cids: list[str]):
    try:
        return await counts(db, cids)
    except Exception:
        return None
