"""A caller rates and lists only its own completions, and an Idempotency-Key's record is small
and expires, through real gateways (SQLite; Postgres + Redis) and the real ingest store.

Another key's completion answers exactly like one that does not exist (404
``completion_not_found``), whether the gateway knows the id from memory (just issued), from a
Redis marker (issued by another gateway) or from the database (the marker expired).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from harness.stores import REDIS_URL
from store.db import Database
from store.ingest import persist, prune_idempotency
from store.queries import feedback_for_completion, get_idempotency
from store.sink import IdempotencyRequest, IngestConfig, IngestSink
from store.streams import connect
from tests.conftest import API_KEYS
from tests.integration.test_feedback_api import MODEL, OTHER_USER, USER, error_of, gw, poll, post
from tests.support import rows

pytestmark = pytest.mark.integration
__all__ = ["gw"]  # the module's gateways: SQLite, Postgres + Redis


def chat(gw, headers=USER) -> str:
    """A completion of the key in ``headers``; its id."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    response = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def listing(gw, cid: str, headers=USER) -> httpx.Response:
    return httpx.get(gw.url + "/v1/feedback", params={"completion_id": cid}, headers=headers, timeout=30)


def test_another_keys_completion_is_answered_like_an_unknown_one(gw):
    """Through the official client: B cannot rate, batch-rate or list A's completion."""
    cid = chat(gw)  # key A's, rated at once: still in flight to the database
    other = openai.OpenAI(base_url=gw.url + "/v1", api_key=API_KEYS[1], max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        other.post("/feedback", body={"completion_id": cid, "label": "down"}, cast_to=object)
    assert caught.value.code == "completion_not_found"
    foreign = post(gw, "/v1/feedback", {"completion_id": cid, "label": "down"}, headers=OTHER_USER)
    unknown = post(gw, "/v1/feedback", {"completion_id": "chatcmpl-" + "0" * 32, "label": "down"})
    assert foreign.status_code == unknown.status_code == 404
    same = error_of(unknown) | {"message": error_of(unknown)["message"].replace("chatcmpl-" + "0" * 32, cid)}
    assert error_of(foreign) == same
    own = chat(gw, OTHER_USER)
    batch = {"items": [{"completion_id": own, "label": "up"}, {"completion_id": cid, "label": "down"}]}
    refused = post(gw, "/v1/feedback/batch", batch, headers=OTHER_USER)
    assert refused.status_code == 404 and error_of(refused)["param"] == "items.1.completion_id"
    assert listing(gw, cid, OTHER_USER).status_code == 404
    assert post(gw, "/v1/feedback", {"completion_id": cid, "label": "up"}).status_code == 200  # A's own
    assert poll(lambda: listing(gw, cid).json()["data"])
    assert listing(gw, own, OTHER_USER).json()["data"] == []  # nothing of the refused batch stored
    assert listing(gw, own).status_code == 404


def test_each_caller_lists_its_own_feedback_and_keys_are_per_caller(gw):
    mine, theirs = chat(gw), chat(gw, OTHER_USER)
    key = f"idem-{uuid.uuid4().hex}"
    a = post(gw, "/v1/feedback", {"completion_id": mine, "reward": 0.5}, key=key)
    b = post(gw, "/v1/feedback", {"completion_id": theirs, "reward": 0.5}, headers=OTHER_USER, key=key)
    assert a.status_code == b.status_code == 200 and a.json()["id"] != b.json()["id"]
    again = post(gw, "/v1/feedback", {"completion_id": mine, "reward": 0.5}, key=key)
    assert again.json() == a.json() and again.headers["idempotent-replayed"] == "true"
    assert poll(lambda: [f["id"] for f in listing(gw, mine).json()["data"]]) == [a.json()["id"]]
    assert poll(lambda: [f["id"] for f in listing(gw, theirs, OTHER_USER).json()["data"]]) == [b.json()["id"]]


# --- the store: Redis markers and the database carry the owner ----------------------------------
async def test_markers_and_the_database_answer_only_the_owner(pg_url, redis_prefix):
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    config = IngestConfig(redis_prefix=redis_prefix, run_consumer=False)
    issuer, other = IngestSink(db, redis, config), IngestSink(db, redis, config)  # two gateways
    await issuer.start()
    await other.start()
    cid = rows.completion_id()
    issuer.record_interaction(rows.interaction_row(cid))  # caller key_test
    await issuer.flush()  # a marker in Redis, nothing in the database yet
    stranger = rows.feedback(rows.feedback_row(cid, caller="key_other"))
    assert (await other.accept_feedback(stranger, None)).missing == [cid]  # the Lua check
    assert (await issuer.accept_feedback(stranger, None)).missing == [cid]  # memory
    assert await other.missing_completions([cid], caller="key_other") == [cid]
    assert await other.missing_completions([cid], caller="key_test") == []
    assert (await other.accept_feedback(rows.feedback(rows.feedback_row(cid)), None)).status == "accepted"
    stored = rows.completion_id()  # stored long ago: no marker, the database answers
    await persist(db.sessions, [rows.interaction(stored)])
    late = IngestSink(db, redis, config)
    await late.start()
    assert (await late.accept_feedback(rows.feedback(rows.feedback_row(stored, caller="x")), None)).missing
    assert (await late.accept_feedback(rows.feedback(rows.feedback_row(stored)), None)).status == "accepted"
    await persist(db.sessions, [rows.feedback(rows.feedback_row(stored, caller="key_other"))])
    async with db.sessions() as s:
        assert {f.caller for f in await feedback_for_completion(s, completion_id=stored)} == {"key_other"}
        assert await feedback_for_completion(s, completion_id=stored, caller="key_test") == []
    for sink in (issuer, other, late):
        await sink.close()
    await redis.aclose()
    await db.close()


async def test_idempotency_records_expire_everywhere(pg_url, redis_prefix):
    """Redis by key TTL, the database by the sink's periodic prune, memory by deadline."""
    db, redis = Database.connect(pg_url), connect(REDIS_URL)
    config = IngestConfig(
        redis_prefix=redis_prefix, run_consumer=False, idempotency_ttl_s=60, prune_every_s=0.2
    )
    sink = IngestSink(db, redis, config)
    cid = rows.completion_id()
    sink.record_interaction(rows.interaction_row(cid))
    idem = IdempotencyRequest("key_test", "k-ttl", "hash", {"created": time.time()})
    entry = rows.feedback(rows.feedback_row(cid), idempotency=idem.row())
    assert (await sink.accept_feedback(entry, idem)).status == "accepted"
    assert 0 < await redis.ttl(sink.stream.idempotency("key_test", "k-ttl")) <= 60
    assert len(await redis.get(sink.stream.idempotency("key_test", "k-ttl"))) < 200
    old = IdempotencyRequest("key_test", "k-old", "hash", {"created": 0.0}).row() | {"created_at": 1.0}
    fresh = IdempotencyRequest("key_test", "k-new", "hash", {"created": time.time()}).row()
    await persist(db.sessions, [rows.feedback(rows.feedback_row(cid), idempotency=r) for r in (old, fresh)])
    async with db.sessions() as s:
        after = datetime.now(UTC) - timedelta(seconds=60)
        assert await get_idempotency(s, caller="key_test", key="k-old", after=after) is None  # expired
        assert await get_idempotency(s, caller="key_test", key="k-new", after=after) is not None
    await sink.start()  # its prune runs at once, then every prune_every_s

    async def left() -> set[str]:
        async with db.sessions() as s:
            found = [await get_idempotency(s, caller="key_test", key=k) for k in ("k-old", "k-new")]
        return {r.key for r in found if r is not None}

    deadline = time.monotonic() + 10
    while await left() != {"k-new"} and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await left() == {"k-new"}
    async with db.sessions() as s:  # nothing left to prune now
        assert await prune_idempotency(s, before=datetime.now(UTC) - timedelta(seconds=60)) == 0
    await sink.close()
    await redis.aclose()
    await db.close()
