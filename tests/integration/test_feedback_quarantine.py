"""Hostile feedback cannot stop learning, and operators can quarantine it (issue 28), on SQLite
and Postgres without an engine:

* the admin feedback routes list, disable, enable and delete by id, caller and time range, and
  audit every action; the learner's scan passes over disabled items and counts them;
* a round over only unusable feedback succeeds as ``skipped`` with its reasons counted and
  moves the cursor; a round whose engine fails consumes nothing (the next one reads it again).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from learner.service import LearnerService, enqueue_round
from learner.settings import LearnerSettings
from server.admin.feedback import router
from store.db import Database
from store.models import Feedback, Interaction
from store.queries import feedback_since
from store.rounds import feedback_cursor, get_round
from store.versions import audit_entries, ensure_base
from tests.support.admin_app import admin_client, own_database

pytestmark = pytest.mark.integration

ADMIN = {"authorization": "Bearer pk-quarantine"}
OLD = datetime.now(UTC) - timedelta(hours=2)  # settled, and past orphan_after_s


async def seed(db: Database, caller: str, n: int, *, when: datetime = OLD, **signals) -> list[str]:
    """``n`` chats of ``caller`` with one feedback item each; returns the feedback ids."""
    ids = []
    async with db.sessions() as s:
        for _ in range(n):
            cid = f"chatcmpl-{uuid.uuid4().hex}"
            s.add(
                Interaction(
                    id=cid,
                    created_at=when,
                    model="m",
                    model_version="base",
                    caller=caller,
                    messages=[{"role": "user", "content": "What is 2 + 2?"}],
                    params={},
                    response="4",
                    choices=[{"index": 0, "message": {"role": "assistant", "content": "4"}}],
                    finish_reason="stop",
                    latency_ms=1.0,
                    stream=False,
                )
            )
            fid = f"fb-{uuid.uuid4().hex}"
            s.add(
                Feedback(id=fid, completion_id=cid, caller=caller, created_at=when, stored_at=when, **signals)
            )
            ids.append(fid)
        await s.commit()
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    # A database of its own: the learner's scan reads from the first feedback row, and the
    # session's shared Postgres database holds every other test's feedback.
    async with own_database(request, tmp_path) as database:
        yield database


@pytest.fixture
async def admin(db):
    async with admin_client(db, router, "pk-quarantine") as client:
        yield client


async def test_operators_list_disable_enable_and_delete_feedback_and_each_action_is_audited(db, admin):
    spammer, other = f"key_{uuid.uuid4().hex[:12]}", f"key_{uuid.uuid4().hex[:12]}"
    spam = await seed(db, spammer, 3, label="up")
    good = await seed(db, other, 2, label="down")
    recent = await seed(db, other, 1, when=datetime.now(UTC) - timedelta(minutes=1), label="up")

    assert (await admin.get("/admin/feedback", params={"caller": spammer})).status_code == 401
    page = (await admin.get("/admin/feedback", params={"caller": spammer, "limit": 2}, headers=ADMIN)).json()
    assert [f["id"] for f in page["data"]] == spam[::-1][:2] and page["has_more"]
    assert page["data"][0]["caller"] == spammer and page["data"][0]["disabled"] is False
    rest = await admin.get(
        "/admin/feedback", params={"caller": spammer, "after": page["last_id"]}, headers=ADMIN
    )
    assert [f["id"] for f in rest.json()["data"]] == [spam[0]]

    nothing = await admin.post("/admin/feedback/disable", json={"reason": "x"}, headers=ADMIN)
    assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "invalid_value"
    done = await admin.post(
        "/admin/feedback/disable", json={"caller": spammer, "reason": "spam"}, headers=ADMIN
    )
    assert done.status_code == 200, done.text
    assert done.json()["count"] == 3 and sorted(done.json()["ids"]) == sorted(spam)
    listed = (
        await admin.get("/admin/feedback", params={"caller": spammer, "disabled": True}, headers=ADMIN)
    ).json()
    assert {f["id"] for f in listed["data"]} == set(spam)
    assert all(f["disabled"] and f["disabled_reason"] == "spam" and f["disabled_at"] for f in listed["data"])

    # the learner's scan passes over disabled items, counts them, and moves past them
    async with db.sessions() as s:
        scan = await feedback_since(s, after_id=0, limit=100_000)
    mine = {item.feedback.id for item in scan.items}
    assert not mine & set(spam) and set(good) <= mine and scan.disabled >= 3

    again = await admin.post("/admin/feedback/enable", json={"ids": spam[:1]}, headers=ADMIN)
    assert again.json()["count"] == 1
    enabled = (
        await admin.get("/admin/feedback", params={"caller": spammer, "disabled": False}, headers=ADMIN)
    ).json()
    assert [f["id"] for f in enabled["data"]] == spam[:1]

    # by time range (and caller): the old items go, the recent one stays
    until = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    gone = await admin.post("/admin/feedback/delete", json={"caller": other, "until": until}, headers=ADMIN)
    assert sorted(gone.json()["ids"]) == sorted(good)
    left = (await admin.get("/admin/feedback", params={"caller": other}, headers=ADMIN)).json()
    assert [f["id"] for f in left["data"]] == recent

    async with db.sessions() as s:
        entries = [e for e in await audit_entries(s, limit=1000) if e.action.startswith("feedback_")]
    by_action = {e.action: e for e in entries if e.details["selection"].get("caller") in (spammer, other)}
    assert by_action["feedback_disable"].who == "admin" and by_action["feedback_disable"].reason == "spam"
    assert by_action["feedback_disable"].details["count"] == 3
    assert sorted(by_action["feedback_delete"].details["ids"]) == sorted(good)
    assert any(e.action == "feedback_enable" and e.details["ids"] == spam[:1] for e in entries)


class DeadEngine:
    """A learner engine that dies as soon as a round asks it for work."""

    degraded = False
    pausable = False

    async def init_state(self, *args, **kwargs):
        raise RuntimeError("the learner engine died")

    async def close(self) -> None:
        pass


async def run_one(service: LearnerService, db: Database) -> dict:
    run = await enqueue_round(db, service.settings, {}, trigger="test")
    await service._execute(run)
    async with db.sessions() as s:
        done = await get_round(s, round_id=run.id)
        return {"round": done, "cursor": await feedback_cursor(s)}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_unusable_feedback_is_skipped_and_consumed_while_a_failed_round_consumes_nothing(
    backend, tmp_path: Path, request
):
    url = f"sqlite:///{tmp_path / 'rounds.db'}"
    if backend == "postgres":  # a database of its own: the cursor is global
        url = request.getfixturevalue("fresh_pg_url")
    db = Database.connect(url)
    await db.migrate()
    try:
        settings = LearnerSettings(
            data_dir=tmp_path / "data", min_free_disk_gb=0, learner_max_feedback_per_caller=2
        )
        service = LearnerService(db, settings, tmp_path / "base", promote=None, schedule=False)
        service.engine = DeadEngine()
        async with db.sessions() as s:
            await ensure_base(s, snapshot_path=str(tmp_path / "base"), sha256=None)
            await s.commit()

        # 1. nothing usable: reward 0, an orphan, a disabled item -> skipped, the cursor moves
        await seed(db, "key_a", 3, reward=0.0)
        async with db.sessions() as s:
            s.add(
                Feedback(
                    id="fb-orphan",
                    completion_id="chatcmpl-gone",
                    caller="key_b",
                    label="up",
                    created_at=OLD,
                    stored_at=OLD,
                )
            )
            await s.commit()
        await seed(db, "key_b", 1, label="up", disabled_at=OLD, disabled_reason="spam")
        first = await run_one(service, db)
        run = first["round"]
        assert (run.status, run.decision, run.error) == ("succeeded", "skipped", None)
        assert run.metrics["phase"] == "skipped"
        assert run.metrics["feedback"]["skipped"] == {"disabled": 1, "no_signal": 3, "unknown_completion": 1}
        assert run.metrics["feedback"]["read"] == 5 and first["cursor"] == run.feedback_to_seq > 0

        # 2. usable feedback, one caller over its cap; the engine dies: failed, nothing consumed
        await seed(db, "key_flood", 5, label="up")
        await seed(db, "key_c", 1, label="down")
        second = await run_one(service, db)
        run = second["round"]
        assert run.status == "failed" and "engine died" in run.error
        assert run.metrics["feedback"]["skipped"] == {"over_caller_cap": 3}
        assert (run.metrics["feedback"]["used"], run.metrics["feedback"]["callers"]) == (3, 2)
        assert second["cursor"] == first["cursor"]

        # 3. the next round reads the same feedback again
        third = await run_one(service, db)
        assert (
            third["round"].feedback_from_seq == first["cursor"]
            and third["round"].metrics["feedback"]["read"] == 6
        )
    finally:
        await db.close()
