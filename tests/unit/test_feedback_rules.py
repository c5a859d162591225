"""Pure rules of the feedback service: ids, derived rewards, verifier normalisation, limits,
and the request hash behind Idempotency-Key (no database, no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect

from server.errors import APIError
from server.feedback.protocol import FeedbackBatchCreate, FeedbackCreate, FeedbackLimits, FeedbackObject
from server.feedback.service import FeedbackService, stored_object
from store.models import Feedback
from store.sink import Acceptance

CID = "chatcmpl-" + "a" * 32


class _Sink:
    """Records what the service hands over; accepts everything."""

    def __init__(self):
        self.entries = []

    async def accept_feedback(self, entry, idem):
        self.entries.append((entry, idem))
        return Acceptance("accepted", idem.response if idem else None)


def service(**limits) -> tuple[FeedbackService, _Sink]:
    from server.settings import Settings

    sink = _Sink()
    fields = {f"feedback_{k}": v for k, v in limits.items()}
    return FeedbackService(Settings(**fields), sink), sink


async def test_label_alone_becomes_a_reward_and_reference_gets_a_verifier():
    svc, sink = service()
    body, replayed = await svc.submit_one(
        b'{"completion_id": "%s", "label": "down", "reference": "42"}' % CID.encode(),
        caller="key_a",
        key=None,
    )
    assert not replayed and body["reward"] == -1.0 and body["verifier"] == {"type": "exact"}
    row = sink.entries[0][0].data["items"][0]
    assert row["caller"] == "key_a" and row["id"] == body["id"] and body["id"].startswith("fb-")


ANSWER_KEYS = ["id", "object", "created", "completion_id", "choice_index", "reward", "label"]
ANSWER_KEYS += ["correction", "reference", "verifier", "task", "metadata"]
# columns the store and operators set, never a request: the order of storing, the quarantine
STORE_ONLY = {"seq", "stored_at", "disabled_at", "disabled_reason"}


def test_the_request_the_answer_and_the_table_declare_the_same_fields():
    """A new field goes on FeedbackCreate, FeedbackObject and the table: this says which is missing."""
    assert set(FeedbackObject.model_fields) == set(FeedbackCreate.model_fields) | {"id", "object", "created"}
    columns = {c.name for c in Feedback.__table__.columns} - STORE_ONLY
    assert columns == set(FeedbackCreate.model_fields) | {"id", "caller", "idempotency_key", "created_at"}


async def test_the_answer_the_row_and_the_stored_row_map_through_the_models():
    svc, sink = service()
    raw = b'{"completion_id": "%s", "label": "up", "task": "t", "metadata": {"k": [1]}}' % CID.encode()
    body, _ = await svc.submit_one(raw, caller="key_a", key="k")
    assert list(body) == ANSWER_KEYS  # the wire format, key order included
    assert body["object"] == "feedback" and body["reward"] == 1.0 and body["metadata"] == {"k": [1]}
    row = sink.entries[0][0].data["items"][0]
    assert set(row) == {c.name for c in Feedback.__table__.columns} - STORE_ONLY
    assert int(row["created_at"]) == body["created"] and row["idempotency_key"] == "k"
    # as store.ingest writes it (column names; created_at as a datetime), then read back
    attrs = {
        a.key: row[a.columns[0].name] for a in inspect(Feedback).column_attrs if a.columns[0].name in row
    }
    stored = Feedback(**{**attrs, "created_at": datetime.fromtimestamp(row["created_at"], UTC)})
    assert stored.meta == {"k": [1]}
    assert stored_object(stored) == body


async def test_ids_derive_from_the_idempotency_key_and_the_hash_ignores_formatting():
    svc, sink = service()
    one = b'{"completion_id": "%s", "reward": 0.5, "task": "t"}' % CID.encode()
    two = b'{"task":"t","reward":0.5,"completion_id":"%s"}' % CID.encode()
    a, _ = await svc.submit_one(one, caller="key_a", key="k")
    b, _ = await svc.submit_one(two, caller="key_a", key="k")
    c, _ = await svc.submit_one(one, caller="key_b", key="k")
    d, _ = await svc.submit_one(one, caller="key_a", key=None)
    hashes = [idem.request_hash if idem else None for _, idem in sink.entries]
    assert a["id"] == b["id"] != c["id"] and d["id"] not in (a["id"], c["id"])
    assert hashes[0] == hashes[1] == hashes[2] and hashes[3] is None
    assert sink.entries[0][0].data["idempotency"]["key"] == "k"


async def test_batch_and_single_bodies_never_share_a_hash():
    svc, sink = service()
    item = b'{"completion_id": "%s", "label": "up"}' % CID.encode()
    await svc.submit_one(item, caller="key_a", key="k1")
    await svc.submit_batch(b'{"items": [%s]}' % item, caller="key_a", key="k2")
    assert sink.entries[0][1].request_hash != sink.entries[1][1].request_hash


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reward": 0.3, "label": "down"}, "items.2.label"),
        ({"reference": "abc", "verifier": "number"}, "items.2.reference"),
        ({"verifier": {"type": "regex", "pattern": "["}}, "items.2.verifier"),
        ({}, "items.2"),
    ],
)
def test_cross_field_rules_name_the_field_inside_a_batch(fields, param):
    with pytest.raises(APIError) as info:
        FeedbackCreate(completion_id=CID, **fields).check("items.2.")
    assert info.value.status == 400 and info.value.param == param


def test_limits_come_from_the_context():
    limits = {"limits": FeedbackLimits(text_max_chars=5, metadata_max_bytes=10, batch_max=2)}
    FeedbackCreate.model_validate({"completion_id": CID, "correction": "12345"}, context=limits)
    with pytest.raises(ValidationError, match="at most 5 characters"):
        FeedbackCreate.model_validate({"completion_id": CID, "correction": "123456"}, context=limits)
    with pytest.raises(ValidationError, match="at most 10 bytes"):
        FeedbackCreate.model_validate({"completion_id": CID, "metadata": {"k": "long"}}, context=limits)
    items = [{"completion_id": CID, "label": "up"}] * 3
    with pytest.raises(ValidationError, match="at most 2 items"):
        FeedbackBatchCreate.model_validate({"items": items}, context=limits)
