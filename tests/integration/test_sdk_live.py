"""The SDK (sync and async) against the real shared server: chat with id and version, streams,
feedback with idempotent replays, typed errors from the envelope, admin listings, suites."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from clients import (
    AsyncPerennial,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FeedbackItem,
    NotFoundError,
    Perennial,
)
from tests.conftest import ADMIN_KEY, API_KEYS
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
FRANCE = "What is the capital of France?"
GREEDY = {"temperature": 0, "max_tokens": 16}
COMPLETION_ID = re.compile(r"^chatcmpl-[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def sdk(server):
    with Perennial(server.url, api_key=API_KEYS[0], admin_key=ADMIN_KEY, timeout=120) as client:
        yield client


def async_sdk(server, **kwargs) -> AsyncPerennial:
    return AsyncPerennial(server.url, api_key=API_KEYS[0], admin_key=ADMIN_KEY, timeout=120, **kwargs)


def test_chat_returns_text_id_version_and_usage(sdk):
    reply = sdk.chat(FRANCE, **GREEDY)
    assert "Paris" in reply.text
    assert COMPLETION_ID.match(reply.id) and reply.id == reply.completion.id
    assert reply.version == "base" and reply.completion.system_fingerprint == "perennial:base"
    assert 0 < reply.usage.completion_tokens <= 16 and reply.finish_reason in ("stop", "length")
    assert sdk.model() == MODEL


def test_stream_yields_deltas_then_exposes_usage(sdk):
    plain = sdk.chat(FRANCE, **GREEDY)
    with sdk.chat_stream([{"role": "user", "content": FRANCE}], **GREEDY) as stream:
        assert COMPLETION_ID.match(stream.id) and stream.version == "base"  # known before tokens
        deltas = list(stream)
    assert len(deltas) > 1 and "".join(deltas) == stream.text == plain.text
    assert stream.usage.completion_tokens == plain.usage.completion_tokens
    assert stream.finish_reason == plain.finish_reason and stream.id != plain.id


async def test_async_chat_and_stream(server):
    async with async_sdk(server) as client:
        reply = await client.chat(FRANCE, **GREEDY)
        stream = await client.chat_stream(FRANCE, **GREEDY)
        deltas = [d async for d in stream]
    assert "Paris" in reply.text and reply.version == "base" and COMPLETION_ID.match(reply.id)
    assert "".join(deltas) == reply.text and stream.usage.total_tokens > 0 and stream.version == "base"


def test_chat_errors_are_typed(server, sdk):
    with pytest.raises(NotFoundError) as caught:
        sdk.chat("hi", model="no-such-model", max_tokens=4)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(BadRequestError) as caught:
        sdk.chat("hi", max_tokens=4, temperature=7)
    assert caught.value.param == "temperature"
    with Perennial(server.url, api_key="sk-wrong", chat_retries=0) as stranger:
        with pytest.raises(AuthenticationError) as caught:
            stranger.chat("hi", model=MODEL, max_tokens=4)
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(AuthenticationError):
            stranger.feedback("chatcmpl-" + "0" * 32, label="up")


def test_feedback_single_batch_and_listing(sdk):
    reply = sdk.chat(FRANCE, **GREEDY)
    up = sdk.feedback(reply.id, label="up", task="capitals", metadata={"source": "sdk-test"})
    assert up.id.startswith("fb-") and up.reward == 1.0 and up.completion_id == reply.id
    batch = sdk.feedback_batch(
        [
            FeedbackItem(completion_id=reply.id, reference="Paris", verifier="contains"),
            {"completion_id": reply.id, "correction": "The capital of France is Paris.", "reward": 0.5},
        ]
    )
    assert len(batch.data) == 2 and batch.data[0].verifier["type"] == "contains"
    stored = eventually(lambda: sdk.feedback_for(reply.id), lambda rows: len(rows) >= 3)
    assert {f.id for f in stored} == {up.id, *(f.id for f in batch.data)}


def test_idempotent_replay_and_key_reuse(sdk):
    reply = sdk.chat(FRANCE, **GREEDY)
    key = f"sdk-test-{uuid.uuid4().hex}"
    first = sdk.feedback(reply.id, reward=0.25, idempotency_key=key)
    again = sdk.feedback(reply.id, reward=0.25, idempotency_key=key)
    assert again.id == first.id and again.replayed and not first.replayed
    with pytest.raises(ConflictError) as caught:
        sdk.feedback(reply.id, reward=-0.25, idempotency_key=key)
    assert caught.value.status == 409 and caught.value.code == "idempotency_key_reused"
    stored = eventually(lambda: sdk.feedback_for(reply.id), lambda rows: len(rows) >= 1)
    time.sleep(1)  # a second row (there must be none) would have been written by now too
    assert [f.id for f in sdk.feedback_for(reply.id)] == [f.id for f in stored] == [first.id]


def test_feedback_errors_name_the_field(sdk):
    with pytest.raises(NotFoundError) as caught:
        sdk.feedback("chatcmpl-" + "f" * 32, label="up")
    assert caught.value.code == "completion_not_found"
    reply = sdk.chat(FRANCE, **GREEDY)
    with pytest.raises(BadRequestError) as caught:
        sdk.feedback_batch(
            [
                {"completion_id": reply.id, "label": "up"},
                {"completion_id": reply.id, "reference": "x", "verifier": "nonsense"},
            ]
        )
    assert caught.value.param.startswith("items.1.")
    assert sdk.feedback_for(reply.id) == []  # all or nothing


async def test_async_feedback_and_admin(server):
    async with async_sdk(server) as client:
        reply = await client.chat(FRANCE, **GREEDY)
        key = f"sdk-async-{uuid.uuid4().hex}"
        first = await client.feedback(reply.id, label="down", idempotency_key=key)
        again = await client.feedback(reply.id, label="down", idempotency_key=key)
        listing = await client.admin.versions()
        for _ in range(150):  # the write-behind store: wait until the feedback row is written
            if await client.feedback_for(reply.id):
                break
            await asyncio.sleep(0.2)
        page = await client.admin.interactions(limit=5, has_feedback=True)
        exported = [i async for i in client.admin.export_interactions(version="base", has_feedback=True)]
    assert again.replayed and again.id == first.id and first.reward == -1.0
    assert listing.serving == "base" and any(v.id == "base" and v.serving for v in listing.data)
    assert page.data and all(i.model_extra["feedback_count"] > 0 for i in page.data)
    assert reply.id in {i.id for i in exported}


def test_admin_listings(sdk):
    listing = sdk.admin.versions()
    assert listing.serving == "base" and [v.id for v in listing.data if v.serving] == ["base"]
    assert sdk.admin.version("base").status == "promoted"
    with pytest.raises(NotFoundError) as caught:
        sdk.admin.version("no-such-version")
    assert caught.value.code == "version_not_found"
    assert isinstance(sdk.admin.rounds(), list) and isinstance(sdk.admin.audit(), list)
    assert sdk.admin.learner()["mode"] and sdk.admin.engine()["state"] == "ready"
    assert sdk.health()["version"] == "base"
    with pytest.raises(NotFoundError):
        sdk.admin.round(10_000_000)


def test_wrong_admin_key_is_an_authentication_error(server):
    with Perennial(server.url, admin_key="pk-wrong") as client, pytest.raises(AuthenticationError) as caught:
        client.admin.versions()
    assert str(caught.value) == "error 401 invalid_api_key: invalid admin key"


def test_suites_upload_list_remove(sdk, tmp_path):
    name = f"sdk_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "suite.jsonl"
    path.write_text(
        f'{{"suite": {{"name": "{name}", "version": 1, "skill": "geography"}}}}\n'
        '{"id": "q1", "prompt": "What is the capital of Italy?", "reference": "Rome", "verifier": "contains"}\n'
        '{"id": "q2", "prompt": "What is the capital of Spain?", "reference": "Madrid", "verifier": "contains"}\n'
    )
    added = sdk.admin.add_suite(path)
    assert (added.name, added.version, added.items, added.enabled) == (name, "1", 2, True)
    assert sdk.admin.add_suite(content=path.read_text()).sha256 == added.sha256  # same content: fine
    with pytest.raises(ConflictError) as caught:
        sdk.admin.add_suite(content=path.read_text().replace("Rome", "Roma"))
    assert caught.value.code == "suite_exists"
    with pytest.raises(BadRequestError) as caught:
        sdk.admin.add_suite(content='{"id": "q1", "prompt": "x", "reference": "y"}', name=f"{name}_bad")
    assert caught.value.code == "invalid_suite" and "verifier" in caught.value.message
    assert any(s.name == name and s.enabled for s in sdk.admin.suites())
    removed = sdk.admin.remove_suite(name)
    assert [(s.name, s.enabled) for s in removed] == [(name, False)]
    assert not next(s for s in sdk.admin.suites() if s.name == name).enabled
    with pytest.raises(NotFoundError):
        sdk.admin.remove_suite(f"{name}_missing")
