"""The Redis ingest path against real Redis and Postgres: the sink, the Lua accept, consumers
that die mid-batch (entries redelivered, nothing duplicated), poison entries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from harness.stores import REDIS_URL
from store.consumer import StreamConsumer
from store.db import Database
from store.ingest import persist
from store.models import Feedback, Interaction
from store.sink import IdempotencyRequest, IngestConfig, IngestSink
from store.streams import IngestStream, connect
from tests.support import rows

REPO = Path(__file__).resolve().parents[2]


async def counts(db: Database, cids: list[str]) -> tuple[int, int]:
    async with db.sessions() as s:
        n_i = await s.scalar(select(func.count()).where(Interaction.id.in_(cids)))
        n_f = await s.scalar(select(func.count()).where(Feedback.completion_id.in_(cids)))
    return n_i, n_f


async def wait_for(db: Database, cids: list[str], expected: tuple[int, int], timeout: float = 20):
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await counts(db, cids)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"stored {got}, expected {expected}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything more (a duplicate) would show up now
    assert await counts(db, cids) == expected


async def drained(stream: IngestStream) -> tuple[int, int]:
    """(entries in the stream, entries pending in the group)."""
    pending = await stream.redis.xpending(stream.stream, stream.group)
    return await stream.redis.xlen(stream.stream), pending["pending"]


async def wait_drained(stream: IngestStream, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (state := await drained(stream)) != (0, 0):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"stream not drained: {state}")
        await asyncio.sleep(0.05)


def make_sink(db: Database, redis: Redis, prefix: str, **config) -> IngestSink:
    return IngestSink(db, redis, IngestConfig(redis_prefix=prefix, claim_idle_s=0.5, **config))


async def test_everything_accepted_is_stored_once_and_the_stream_drains(pg_url, redis_prefix):
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    sink = make_sink(db, redis, redis_prefix)
    await sink.start()
    cids = [rows.completion_id() for _ in range(60)]
    for cid in cids:
        sink.record_interaction(rows.interaction_row(cid))
    for i, cid in enumerate(cids):
        result = await sink.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)
        assert result.status == "accepted"
        if i % 3 == 0:  # two items in one request
            extra = rows.feedback(rows.feedback_row(cid), rows.feedback_row(cid, reward=-1.0, label="down"))
            assert (await sink.accept_feedback(extra, None)).status == "accepted"
    await sink.flush()
    await wait_for(db, cids, (60, 60 + 2 * 20))
    assert await drained(sink.stream) == (0, 0)
    assert sink.writer.written == 0  # all of it went through Redis
    await sink.close()
    await redis.aclose()
    await db.close()


async def test_ids_issued_by_another_gateway_and_idempotency(pg_url, redis_prefix):
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    issuer = make_sink(db, redis, redis_prefix, run_consumer=False)
    other = make_sink(db, redis, redis_prefix, run_consumer=False)  # a second gateway
    await issuer.start()
    await other.start()
    cid = rows.completion_id()
    issuer.record_interaction(rows.interaction_row(cid))
    await issuer.flush()  # published: marker + XADD, nothing persisted (no consumer runs)
    assert (await other.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)).status == "accepted"
    unknown = await other.accept_feedback(rows.feedback(rows.feedback_row("chatcmpl-nope")), None)
    assert unknown.status == "missing" and unknown.missing == ["chatcmpl-nope"]
    first = IdempotencyRequest("key_test", "key-1", "hash-a", {"id": "fb-first"})
    entry = rows.feedback(rows.feedback_row(cid), idempotency=first.row())
    assert (await issuer.accept_feedback(entry, first)).status == "accepted"
    again = await other.accept_feedback(entry, IdempotencyRequest("key_test", "key-1", "hash-a", {}))
    assert again.status == "replay" and again.response == {"id": "fb-first"}
    changed = await other.accept_feedback(entry, IdempotencyRequest("key_test", "key-1", "hash-b", {}))
    assert changed.status == "conflict"
    other_caller = IdempotencyRequest("key_other", "key-1", "hash-b", {"id": "x"})
    assert (await other.accept_feedback(entry, other_caller)).status == "accepted"
    for sink in (issuer, other):
        await sink.close()
    consumer = StreamConsumer(issuer.stream, db.sessions, claim_idle_s=0.5)
    consumer.start()
    await wait_for(db, [cid], (1, 2))  # 3 accepted entries; the last two carry the same item
    await consumer.stop()
    assert await drained(issuer.stream) == (0, 0)
    await redis.aclose()
    await db.close()


async def test_expired_marker_falls_back_to_the_database(pg_url, redis_prefix):
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    cid = rows.completion_id()
    await persist(db.sessions, [rows.interaction(cid)])  # stored long ago; marker gone
    sink = make_sink(db, redis, redis_prefix, run_consumer=False)
    await sink.start()
    assert (await sink.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)).status == "accepted"
    assert await sink.missing_completions([cid, "chatcmpl-nope"]) == ["chatcmpl-nope"]
    await sink.close()
    await redis.aclose()
    await db.close()


KILLED_CONSUMER = textwrap.dedent("""
    import asyncio, os, sys
    from redis.asyncio import Redis
    from store.consumer import StreamConsumer
    from store.db import Database
    from store.streams import IngestStream

    class Doomed(StreamConsumer):
        async def _persist(self, entries):
            if sys.argv[3] == "after-commit":
                await super()._persist(entries)  # committed, but never acked
            print(len(entries), flush=True)
            os._exit(9)  # killed mid-batch

    async def main():
        stream = IngestStream(Redis.from_url(sys.argv[1]), prefix=sys.argv[2],
                              completion_ttl_s=60, idempotency_ttl_s=60)
        db = Database.connect(sys.argv[4])
        await Doomed(stream, db.sessions, name="doomed", batch_size=1000).run()

    asyncio.run(main())
""")


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
async def test_consumer_killed_mid_batch_entries_redelivered_once(pg_url, redis_prefix, when):
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    stream = IngestStream(redis, prefix=redis_prefix, completion_ttl_s=60, idempotency_ttl_s=60)
    await stream.ensure_group()
    cids = [rows.completion_id() for _ in range(40)]
    await stream.publish_interactions([rows.interaction_row(cid) for cid in cids])
    for cid in cids:
        await stream.accept_feedback(
            rows.feedback(rows.feedback_row(cid)), idem_key=None, idem_value="", check_ids=[cid]
        )
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CONSUMER, REDIS_URL, redis_prefix, when, pg_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 9 and proc.stdout.strip() == "80", proc.stderr[-2000:]
    assert await drained(stream) == (80, 80)  # all delivered to the dead consumer, none acked
    expected_now = (40, 40) if when == "after-commit" else (0, 0)
    assert await counts(db, cids) == expected_now
    survivor = StreamConsumer(stream, db.sessions, claim_idle_s=0.3)
    survivor.start()
    await wait_for(db, cids, (40, 40))
    await wait_drained(stream)
    await survivor.stop()
    assert survivor.claimed == 80
    assert await counts(db, cids) == (40, 40)
    await redis.aclose()
    await db.close()


async def test_poison_entry_goes_to_the_dead_letter_stream(sqlite_url, redis_prefix):
    db, redis = Database.connect(sqlite_url), connect(REDIS_URL)
    stream = IngestStream(redis, prefix=redis_prefix, completion_ttl_s=60, idempotency_ttl_s=60)
    await stream.ensure_group()
    good = rows.completion_id()
    await stream.publish_interactions([rows.interaction_row(good)])
    bad = rows.feedback(rows.feedback_row(good, reward=3.0))  # refused by the CHECK constraint
    await stream.accept_feedback(bad, idem_key=None, idem_value="", check_ids=[])
    consumer = StreamConsumer(stream, db.sessions)
    consumer.start()
    await wait_for(db, [good], (1, 0))
    await consumer.stop()
    assert consumer.dead == 1 and await redis.xlen(stream.dead) == 1
    assert await drained(stream) == (0, 0)
    await redis.aclose()
    await db.close()


async def test_nul_entries_undecodable_and_refused_ones_never_stop_the_stream(db_url, redis_prefix):
    """Redis, then SQLite or Postgres: a U+0000 chat and feedback (stored, as U+2400), an undecodable stream
    entry and a refused one (dead-lettered with their errors) ahead of ordinary traffic: every
    ordinary entry is stored once, the stream drains, and the backlog shows the dead letters."""
    from store.ingest import Entry
    from store.models import IngestDeadLetter
    from store.sink import IngestCollector

    db, redis = Database.connect(db_url), connect(REDIS_URL)
    sink = make_sink(db, redis, redis_prefix, backlog_every_s=0.1)
    postgres = db_url.startswith("postgresql")
    since = datetime.now(UTC) - timedelta(
        seconds=1
    )  # the shared Postgres database keeps other tests' letters
    await sink.start()
    bad, others = rows.completion_id(), [rows.completion_id() for _ in range(30)]
    nul = "a\x00b"
    sink.record_interaction(rows.interaction_row(bad, messages=[{"role": "user", "content": nul}]))
    await sink.flush()
    entry = Entry("feedback", {"items": [rows.feedback_row(bad, correction=nul, metadata={"m": nul})]})
    assert (await sink.accept_feedback(entry, None)).status == "accepted"
    await redis.xadd(sink.stream.stream, {"k": "interaction", "d": b"{not json"})
    refused = rows.feedback(rows.feedback_row(bad, reward=9.0))  # the reward CHECK refuses it
    await sink.stream.accept_feedback(refused, idem_key=None, idem_value="", check_ids=[])
    for cid in others:
        sink.record_interaction(rows.interaction_row(cid))
        await sink.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)
    await wait_for(db, others, (30, 30))
    await wait_for(db, [bad], (1, 1))
    await wait_drained(sink.stream)
    async with db.sessions() as s:
        letters = (
            await s.scalars(select(IngestDeadLetter).where(IngestDeadLetter.created_at >= since))
        ).all()
        stored = await s.scalar(select(Interaction).where(Interaction.id == bad))
    assert stored.messages[0]["content"] == ("a\u2400b" if postgres else nul)
    assert sorted(letter.kind for letter in letters) == ["feedback", "undecodable"]
    assert {letter.sqlstate for letter in letters} == ({"23514", None} if postgres else {None})
    assert sink.consumer.dead == 2 and await redis.xlen(sink.stream.dead) == 2
    await asyncio.sleep(0.3)  # a backlog read
    assert sink.stats()["stream"] == {"length": 0, "lag": 0, "pending": 0, "dead": 2}
    gauges = {m.name: m.samples[0].value for m in IngestCollector(sink).collect()}
    assert gauges["perennial_ingest_dead_letters"] == 2 and gauges["perennial_ingest_stream_lag"] == 0
    await sink.close()
    await redis.aclose()
    await db.close()


async def test_the_stream_is_capped(redis_prefix):
    redis = connect(REDIS_URL)
    stream = IngestStream(redis, prefix=redis_prefix, completion_ttl_s=60, idempotency_ttl_s=60, maxlen=1000)
    await stream.ensure_group()
    for _ in range(30):
        await stream.publish_interactions([rows.interaction_row() for _ in range(100)])
    for _ in range(10):
        entry = rows.feedback(rows.feedback_row(rows.completion_id()))
        await stream.accept_feedback(entry, idem_key=None, idem_value="", check_ids=[])
    assert 1000 <= await redis.xlen(stream.stream) < 1200  # MAXLEN ~: trimmed by whole nodes
    await redis.aclose()


async def test_accepts_survive_a_flushed_script_cache_and_batch_under_load(private_redis):
    redis = connect(private_redis.url)
    stream = IngestStream(redis, prefix="p", completion_ttl_s=60, idempotency_ttl_s=60)
    await stream.ensure_group()
    await redis.script_flush()  # what a Redis restart does to loaded scripts
    cids = [rows.completion_id() for _ in range(200)]
    replies = await asyncio.gather(
        *(
            stream.accept_feedback(
                rows.feedback(rows.feedback_row(cid)), idem_key=None, idem_value="", check_ids=[]
            )
            for cid in cids
        )
    )
    assert [r.status for r in replies] == ["ok"] * 200
    assert await redis.xlen(stream.stream) == 200
    # 200 concurrent accepts went out in a few pipelined round trips (group commit), the
    # first of which met NOSCRIPT and was replayed after loading the script.
    assert 2 <= stream._accept.round_trips <= 10
    await redis.aclose()
