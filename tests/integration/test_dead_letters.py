"""Ingest dead letters are visible and bounded for operators (issue 28), on SQLite and Postgres:

* an entry the database refuses (a reward past its CHECK, carrying a U+0000 and a 200,000
  character correction) is dead-lettered by the ingest path itself, listed by the admin route
  newest first with its error and SQLSTATE, previewed, never sent whole, and can be deleted
  (audited; a second delete is a 404);
* the ingest sink's prune keeps the newest ``dead_letters_keep`` rows, none older than
  ``dead_letters_max_age_s``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from server.admin.dead_letters import router
from store.db import Database
from store.ingest import persist_batch
from store.models import Feedback, IngestDeadLetter, Interaction
from store.sink import IngestConfig, IngestSink
from store.versions import audit_entries
from tests.support import rows
from tests.support.admin_app import admin_client, own_database

pytestmark = pytest.mark.integration

ADMIN = {"authorization": "Bearer pk-dead"}
ROUTE = "/admin/ingest/dead-letters"


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    # A database of its own: the prune below deletes letters, and the shared Postgres one keeps other tests'.
    async with own_database(request, tmp_path) as database:
        yield database


@pytest.fixture
async def admin(db):
    async with admin_client(db, router, "pk-dead") as client:
        yield client


async def refuse(db: Database, when: datetime, **signals) -> str:
    """One chat and one feedback item the database refuses (its CHECK) in one batch; returns the
    dead letter's id (the chat is stored)."""
    cid = rows.completion_id()
    batch = [rows.interaction(cid), rows.feedback(rows.feedback_row(cid, **signals))]
    (letter,) = await persist_batch(db.sessions, batch)
    letter_id = letter.row()["id"]
    async with db.sessions() as s:
        await s.execute(
            update(IngestDeadLetter).where(IngestDeadLetter.id == letter_id).values(created_at=when)
        )
        await s.commit()
        assert await s.scalar(select(func.count()).select_from(Interaction).where(Interaction.id == cid)) == 1
    return letter_id


async def test_dead_letters_are_listed_previewed_deleted_and_audited(db, admin):
    now = datetime.now(UTC)
    big = "a\x00b" + "x" * 200_000
    huge = await refuse(db, now - timedelta(minutes=2), reward=9.0, correction=big, metadata={"k": "\x00"})
    small = await refuse(db, now - timedelta(minutes=1), label="sideways")
    async with db.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Feedback)) == 0

    assert (await admin.get(ROUTE)).status_code == 401
    page = (await admin.get(ROUTE, params={"limit": 1}, headers=ADMIN)).json()
    assert page["object"] == "list" and page["total"] == 2 and page["has_more"] is True
    assert [d["id"] for d in page["data"]] == [small] == [page["first_id"]] == [page["last_id"]]
    rest = (await admin.get(ROUTE, params={"after": page["last_id"]}, headers=ADMIN)).json()
    assert [d["id"] for d in rest["data"]] == [huge] and rest["has_more"] is False
    letter = rest["data"][0]
    assert letter["object"] == "ingest.dead_letter" and letter["kind"] == "feedback"
    assert letter["entry_chars"] > 200_000 and len(letter["entry_preview"]) == 500
    assert "\\u0000" in letter["entry_preview"] and "\x00" not in letter["entry_preview"]
    assert "reward" in letter["error"] and len(letter["error"]) <= 1000
    assert letter["sqlstate"] == ("23514" if db.url.drivername.startswith("postgresql") else None)
    assert abs(letter["created"] - (now - timedelta(minutes=2)).timestamp()) < 2

    missing = await admin.get(ROUTE, params={"after": "0" * 64}, headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "dead_letter_not_found"
    gone = await admin.delete(f"{ROUTE}/{huge}", headers=ADMIN)
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"object": "ingest.dead_letter.deleted", "id": huge, "deleted": True}
    again = await admin.delete(f"{ROUTE}/{huge}", headers=ADMIN)
    assert again.status_code == 404 and again.json()["error"]["param"] == "letter_id"
    left = (await admin.get(ROUTE, headers=ADMIN)).json()
    assert [d["id"] for d in left["data"]] == [small] and left["total"] == 1
    async with db.sessions() as s:
        (entry,) = [e for e in await audit_entries(s) if e.action == "dead_letter_delete"]
    assert entry.target == huge and entry.who == "admin" and entry.details["kind"] == "feedback"


async def test_the_sink_keeps_the_newest_dead_letters_within_their_age(db):
    now = datetime.now(UTC)
    ancient = await refuse(db, now - timedelta(days=40), label="sideways")
    ids = [await refuse(db, now - timedelta(minutes=10 - i), label="sideways") for i in range(5)]
    sink = IngestSink(db, None, IngestConfig(dead_letters_keep=3, dead_letters_max_age_s=30 * 86_400))
    await sink.prune()
    async with db.sessions() as s:
        kept = set(await s.scalars(select(IngestDeadLetter.id)))
    assert kept == set(ids[-3:]) and ancient not in kept
    await sink.prune()  # nothing more to do
    async with db.sessions() as s:
        assert set(await s.scalars(select(IngestDeadLetter.id))) == kept
