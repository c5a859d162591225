"""Idempotent persistence, the direct writer and the read queries, on SQLite and Postgres."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from store import queries
from store.db import Database
from store.ingest import Entry, persist, persist_isolating
from store.models import Feedback, IdempotencyKey, IngestDeadLetter, Interaction
from store.writer import DirectWriter
from tests.support import rows


@asynccontextmanager
async def opened(url: str):
    db = Database.connect(url)
    try:
        yield db
    finally:
        await db.close()


async def count(db: Database, model, *where) -> int:
    async with db.sessions() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where))


async def test_a_batch_written_twice_is_stored_once(db_url):
    cid = rows.completion_id()
    fb = rows.feedback_row(cid, metadata={"source": "t"})
    idem = {
        "caller": "key_test",
        "key": f"k-{cid}",
        "request_hash": "h",
        "response": {"id": fb["id"]},
        "created_at": time.time(),
    }
    batch = [rows.interaction(cid), rows.feedback(fb, idempotency=idem)]
    async with opened(db_url) as db:
        await persist(db.sessions, batch)
        await persist(db.sessions, batch)  # a redelivered stream batch
        await persist(db.sessions, [batch[0], batch[0]])  # duplicates inside one batch
        assert await count(db, Interaction, Interaction.id == cid) == 1
        assert await count(db, Feedback, Feedback.completion_id == cid) == 1
        assert await count(db, IdempotencyKey, IdempotencyKey.key == f"k-{cid}") == 1
        async with db.sessions() as s:
            stored = (await queries.feedback_for_completion(s, completion_id=cid))[0]
            interaction = await s.scalar(select(Interaction).where(Interaction.id == cid))
    assert stored.meta == {"source": "t"} and stored.reward == 1.0 and stored.label == "up"
    assert stored.created_at.tzinfo is UTC
    assert interaction.messages == batch[0].data["messages"]
    assert interaction.params == {"max_tokens": 8, "temperature": 0}
    assert abs(interaction.created_at.timestamp() - batch[0].data["created_at"]) < 1e-3


async def test_poison_entry_is_isolated_and_the_rest_written(db_url):
    good, other = rows.completion_id(), rows.completion_id()
    poison = rows.feedback(rows.feedback_row(good, reward=7.0))  # violates the reward CHECK
    batch = [rows.interaction(good), poison, rows.interaction(other)]
    async with opened(db_url) as db:
        refused = await persist_isolating(db.sessions, batch)
        assert [letter.entry for letter in refused] == [poison]
        assert "reward" in refused[0].error
        assert await count(db, Interaction, Interaction.id.in_([good, other])) == 2
        assert await count(db, Feedback, Feedback.completion_id == good) == 0


async def test_direct_writer_batches_and_drains_on_stop(db_url):
    cids = [rows.completion_id() for _ in range(120)]
    async with opened(db_url) as db:
        writer = DirectWriter(db.sessions, batch_size=50)
        writer.start()
        for cid in cids:
            writer.submit(rows.interaction(cid))
            writer.submit(rows.feedback(rows.feedback_row(cid)))
        await writer.stop()
        assert writer.written == 240 and writer.pending == 0
        assert await count(db, Interaction, Interaction.id.in_(cids)) == 120
        assert await count(db, Feedback, Feedback.completion_id.in_(cids)) == 120


async def test_direct_writer_dead_letters_only_the_refused_entry(db_url):
    good = rows.completion_id()
    async with opened(db_url) as db:
        writer = DirectWriter(db.sessions)
        writer.start()
        writer.submit(rows.feedback(rows.feedback_row(good, label="sideways")))  # CHECK fails
        writer.submit(rows.interaction(good))
        await writer.stop()
        assert writer.refused == 1
        assert await count(db, Interaction, Interaction.id == good) == 1
        async with db.sessions() as s:
            (letter,) = (await s.scalars(select(IngestDeadLetter))).all()
        assert letter.kind == "feedback" and "sideways" in letter.entry and "label" in letter.error
        if db_url.startswith("postgresql"):
            assert letter.sqlstate == "23514"  # check_violation, read through SQLAlchemy's wrapper


NUL_TEXT = "before\x00after"


async def test_a_nul_bearing_entry_is_stored_and_so_is_everything_behind_it(db_url):
    """One U+0000 in chat content, a correction and metadata (JSON allows it; Postgres text and
    jsonb do not) used to stop Postgres ingest for good: the batch was retried forever."""
    bad, others = rows.completion_id(), [rows.completion_id() for _ in range(20)]
    nul_chat = rows.interaction_row(bad, messages=[{"role": "user", "content": NUL_TEXT}], response=NUL_TEXT)
    nul_feedback = rows.feedback_row(bad, correction=NUL_TEXT, metadata={"k\x00": NUL_TEXT})
    async with opened(db_url) as db:
        writer = DirectWriter(db.sessions, batch_size=500)
        writer.start()
        writer.submit(Entry("interaction", nul_chat))
        writer.submit(rows.feedback(nul_feedback))
        for cid in others:
            writer.submit(rows.interaction(cid))
            writer.submit(rows.feedback(rows.feedback_row(cid)))
        await writer.stop(timeout_s=60)
        assert writer.pending == 0 and writer.refused == 0
        assert await count(db, Interaction, Interaction.id.in_(others)) == 20
        assert await count(db, Feedback, Feedback.completion_id.in_(others)) == 20
        async with db.sessions() as s:
            chat = await s.scalar(select(Interaction).where(Interaction.id == bad))
            (fb,) = await queries.feedback_for_completion(s, completion_id=bad)
    stored = NUL_TEXT if db_url.startswith("sqlite") else "before\u2400after"  # Postgres: U+2400
    assert chat.messages[0]["content"] == stored and chat.response == stored
    assert fb.correction == stored and fb.meta == {stored.replace("before", "k").replace("after", ""): stored}


async def test_postgres_refusals_are_data_errors_whatever_the_drivers_exception(pg_url):
    """asyncpg's refusal of U+0000 reaches SQLAlchemy as a generic DBAPIError: its SQLSTATE
    (22021 in text, 22P05 in jsonb) classes it as data, an unreachable database is not."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from store.ingest import is_data_error, sqlstate

    async with opened(pg_url) as db:
        for statement, params in [
            ("SELECT CAST(:v AS text)", {"v": NUL_TEXT}),
            ("SELECT CAST(:v AS jsonb)", {"v": '{"a": "\\u0000"}'}),
        ]:
            with pytest.raises(DBAPIError) as info:
                async with db.sessions() as s:
                    await s.execute(text(statement), params)
            assert sqlstate(info.value)[:2] == "22" and is_data_error(info.value)
    down = Database.connect("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(Exception) as info:
        async with down.sessions() as s:
            await s.execute(text("SELECT 1"))
    assert not is_data_error(info.value)
    await down.close()


async def _store(db: Database, *entries: Entry) -> None:
    await persist(db.sessions, list(entries))


async def test_feedback_since_joins_and_waits_for_missing_interactions(db_url):
    a, late = rows.completion_id(), rows.completion_id()
    async with opened(db_url) as db:
        async with db.sessions() as s:
            start = (await queries.feedback_since(s, settle_s=0, limit=100_000)).next_after_id
        await _store(
            db,
            rows.interaction(
                a,
                choices=[
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "zero"},
                        "finish_reason": "stop",
                    },
                    {"index": 1, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"},
                ],
            ),
        )
        await _store(db, rows.feedback(rows.feedback_row(a, choice_index=1, correction="better")))
        await _store(db, rows.feedback(rows.feedback_row(late)))  # interaction still in flight
        await _store(db, rows.feedback(rows.feedback_row(a, reward=-0.5, label=None)))
        async with db.sessions() as s:
            page = await queries.feedback_since(s, after_id=start, settle_s=0)
        # The scan stops before the item whose interaction is missing: nothing is skipped.
        assert [i.feedback.completion_id for i in page.items] == [a]
        assert page.items[0].response == "one" and page.items[0].feedback.correction == "better"
        assert page.items[0].messages == [{"role": "user", "content": f"question {a[-6:]}"}]
        await _store(db, rows.interaction(late))
        async with db.sessions() as s:
            rest = await queries.feedback_since(s, after_id=page.next_after_id, settle_s=0)
            unsettled = await queries.feedback_since(s, after_id=page.next_after_id, settle_s=60)
        assert [i.feedback.completion_id for i in rest.items] == [late, a]
        assert rest.items[1].feedback.reward == -0.5 and rest.next_after_id > page.next_after_id
        assert unsettled.items == [] and unsettled.next_after_id == page.next_after_id


async def test_feedback_since_gives_up_on_orphans(db_url):
    orphan = rows.completion_id()
    async with opened(db_url) as db:
        async with db.sessions() as s:
            start = (await queries.feedback_since(s, settle_s=0, limit=100_000)).next_after_id
        await _store(db, rows.feedback(rows.feedback_row(orphan)))
        async with db.sessions() as s:
            page = await queries.feedback_since(s, after_id=start, settle_s=0, orphan_after_s=0)
    assert [i.interaction for i in page.items] == [None] and page.items[0].response is None


async def test_list_interactions_filters_and_pages(db_url):
    version = f"v-{rows.completion_id()[-8:]}"
    cids = [rows.completion_id() for _ in range(5)]
    t0 = time.time() - 100
    async with opened(db_url) as db:
        for i, cid in enumerate(cids):
            await _store(db, rows.interaction(cid, model_version=version, created_at=t0 + 10 * i))
        await _store(
            db,
            rows.feedback(rows.feedback_row(cids[1])),
            rows.feedback(rows.feedback_row(cids[1])),
            rows.feedback(rows.feedback_row(cids[3])),
        )
        f = queries.InteractionFilter(version=version)
        async with db.sessions() as s:
            first = await queries.list_interactions(s, filters=f, limit=2)
            second = await queries.list_interactions(s, filters=f, limit=2, after=first.rows[-1][0].id)
            last = await queries.list_interactions(s, filters=f, limit=2, after=second.rows[-1][0].id)
            rated = await queries.list_interactions(
                s, filters=queries.InteractionFilter(version=version, has_feedback=True), descending=False
            )
            unrated = await queries.list_interactions(
                s, filters=queries.InteractionFilter(version=version, has_feedback=False)
            )
            window = await queries.list_interactions(
                s,
                filters=queries.InteractionFilter(
                    version=version,
                    since=datetime.fromtimestamp(t0 + 5, UTC),
                    until=datetime.fromtimestamp(t0 + 25, UTC),
                ),
            )
            with pytest.raises(queries.UnknownCursor):
                await queries.list_interactions(s, filters=f, after="chatcmpl-nope")
        exported = [
            (i.id, len(fb)) async for i, fb in queries.iter_interactions(db.sessions, filters=f, page_size=2)
        ]
    ids = lambda page: [i.id for i, _ in page.rows]  # noqa: E731
    assert ids(first) == cids[::-1][:2] and first.has_more
    assert ids(second) == cids[::-1][2:4] and second.has_more
    assert ids(last) == [cids[0]] and not last.has_more
    assert [(i.id, n) for i, n in rated.rows] == [(cids[1], 2), (cids[3], 1)]
    assert set(ids(unrated)) == {cids[0], cids[2], cids[4]}
    assert ids(window) == [cids[2], cids[1]]
    assert exported == [(cids[0], 0), (cids[1], 2), (cids[2], 0), (cids[3], 1), (cids[4], 0)]
