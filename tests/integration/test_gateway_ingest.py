"""Ingest through real gateways: feedback that overtakes its interaction (and another
gateway), Redis stopped while chats and feedback keep arriving, logging switched off."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from harness.processes import start_ingest_worker, start_server
from harness.stores import REDIS_URL, delete_prefix
from store import queries
from store.db import Database
from store.models import Feedback, Interaction
from tests.integration.test_feedback_api import ADMIN, USER, all_feedback, chat, gateway_env, poll, post

pytestmark = pytest.mark.integration


async def _stored(db_url: str, cids: list[str]) -> tuple[int, int, int]:
    """(interactions, feedback rows, distinct feedback ids) stored for ``cids``."""
    db = Database.connect(db_url)
    async with db.sessions() as s:
        n_i = await s.scalar(select(func.count()).where(Interaction.id.in_(cids)))
        n_f = await s.scalar(select(func.count()).where(Feedback.completion_id.in_(cids)))
        n_d = await s.scalar(
            select(func.count(func.distinct(Feedback.id))).where(Feedback.completion_id.in_(cids))
        )
    await db.close()
    return n_i, n_f, n_d


def stored(db_url: str, cids: list[str]) -> tuple[int, int, int]:
    return asyncio.run(_stored(db_url, cids))


async def _joined(db_url: str, cid: str) -> list[queries.FeedbackItem]:
    db = Database.connect(db_url)
    async with db.sessions() as s:
        page = await queries.feedback_since(s, after_id=0, limit=100_000, settle_s=0)
    await db.close()
    return [item for item in page.items if item.feedback.completion_id == cid]


def test_feedback_before_its_interaction_is_stored(tmp_path, model_dir, engine_url, pg_url):
    prefix = f"ptest-{uuid.uuid4().hex[:10]}"
    env = gateway_env(
        model_dir,
        engine_url,
        PERENNIAL_DATABASE_URL=pg_url,
        PERENNIAL_REDIS_URL=REDIS_URL,
        PERENNIAL_REDIS_PREFIX=prefix,
    )
    idle = {**env, "PERENNIAL_INGEST_CONSUMER": "false"}  # nothing reaches the DB through these
    issuer = start_server(tmp_path / "issuer", idle)
    other = start_server(tmp_path / "other", idle)
    consumer: subprocess.Popen | None = None
    try:
        reply = chat(issuer, "What is 2 + 2?")
        cid = reply["id"]
        here = post(issuer, "/v1/feedback", {"completion_id": cid, "reference": "4", "verifier": "number"})
        there = post(other, "/v1/feedback", {"completion_id": cid, "label": "down", "task": "math"})
        assert here.status_code == there.status_code == 200, (here.text, there.text)
        time.sleep(0.5)
        assert stored(pg_url, [cid]) == (0, 0, 0)  # accepted, not persisted yet
        assert all_feedback(other, cid) == []  # issued (no 404), nothing stored yet
        consumer = start_ingest_worker(env, tmp_path / "ingest.log")  # `perennial ingest`
        assert poll(lambda: stored(pg_url, [cid]) == (1, 2, 2)), stored(pg_url, [cid])
        items = asyncio.run(_joined(pg_url, cid))
        assert sorted(i.feedback.id for i in items) == sorted([here.json()["id"], there.json()["id"]])
        assert all(i.response == reply["choices"][0]["message"]["content"] for i in items)
        assert all(i.messages == [{"role": "user", "content": "What is 2 + 2?"}] for i in items)
    finally:
        for gw in (issuer, other):
            gw.stop()
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(30) == 0  # a clean stop on SIGTERM
        delete_prefix(REDIS_URL, prefix)


def test_redis_stopped_while_chats_and_feedback_keep_arriving(
    tmp_path, model_dir, engine_url, pg_url, private_redis
):
    env = gateway_env(
        model_dir,
        engine_url,
        PERENNIAL_DATABASE_URL=pg_url,
        PERENNIAL_REDIS_URL=private_redis.url,
        PERENNIAL_INGEST_CLAIM_IDLE_S="1",
    )
    gw = start_server(tmp_path / "gw", env)
    cids: list[str] = []
    feedback_ids: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                body = {
                    "model": "smollm2-135m-instruct",
                    "max_tokens": 1,
                    "messages": [{"role": "user", "content": f"Hi {len(cids)}"}],
                }
                r = client.post(gw.url + "/v1/chat/completions", json=body, headers=USER)
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                cids.append(r.json()["id"])
                for reward in (1.0, -0.5, 0.25):
                    f = client.post(
                        gw.url + "/v1/feedback",
                        headers=USER,
                        json={"completion_id": cids[-1], "reward": reward},
                    )
                    feedback_ids.append(f.json()["id"]) if f.status_code == 200 else errors.append(f.text)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(3)
        private_redis.stop()
        during = len(cids)
        time.sleep(4)
        assert len(cids) > during, "no traffic while Redis was down"
        private_redis.start()
        time.sleep(3)
    finally:
        stop.set()
        worker.join(180)
    try:
        assert errors == []
        n = len(cids)
        assert poll(lambda: stored(pg_url, cids) == (n, 3 * n, 3 * n), timeout=30), stored(pg_url, cids)
        status = httpx.get(gw.url + "/admin/store", headers=ADMIN).json()
        assert status["fallbacks"] > 0 and status["writer"]["written"] > 0  # both paths used
        time.sleep(1.5)
        assert stored(pg_url, cids) == (n, 3 * n, 3 * n)  # still exactly once
    finally:
        gw.stop()


def test_logging_off_stores_no_interactions(tmp_path, model_dir, engine_url):
    env = gateway_env(model_dir, engine_url, PERENNIAL_LOG_INTERACTIONS="false")
    gw = start_server(tmp_path / "gw", env)
    try:
        cid = chat(gw)["id"]
        time.sleep(0.5)
        listing = httpx.get(gw.url + "/admin/interactions", headers=ADMIN).json()
        assert listing["data"] == []
        # Nothing was recorded, so there is nothing to attach feedback to.
        assert post(gw, "/v1/feedback", {"completion_id": cid, "label": "up"}).status_code == 404
    finally:
        gw.stop()
