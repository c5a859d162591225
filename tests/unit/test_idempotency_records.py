"""An Idempotency-Key's record is small and expires: a hash and the first answer's time, kept
``idempotency_ttl_s`` in at most ``idempotency_cache`` memory entries; a replay rebuilds the
first answer from the (identical) request (no database, no Redis)."""

from __future__ import annotations

import json
import time

from server.feedback.service import FeedbackService
from server.settings import Settings
from store.sink import Acceptance, _Expiring

CID = "chatcmpl-" + "b" * 32


class _Sink:
    """Accepts the first request under a key; answers later ones from the record it kept."""

    def __init__(self):
        self.records = {}

    async def accept_feedback(self, entry, idem):
        if idem is None:
            return Acceptance("accepted")
        found = self.records.get((idem.caller, idem.key))
        if found is None:
            self.records[(idem.caller, idem.key)] = (idem.request_hash, idem.response)
            return Acceptance("accepted", idem.response)
        if found[0] != idem.request_hash:
            return Acceptance("conflict")
        return Acceptance("replay", found[1])


def big_batch(n: int = 50) -> bytes:
    text = "x" * 30_000
    items = [{"completion_id": CID, "correction": text, "reference": text, "task": "t"} for _ in range(n)]
    return json.dumps({"items": items}).encode()


async def test_the_record_is_small_and_a_replay_gets_the_first_answer_back():
    sink = _Sink()
    svc = FeedbackService(Settings(), sink)
    raw = big_batch()
    first, replayed = await svc.submit_batch(raw, caller="key_a", key="k-1")
    assert not replayed and len(json.dumps(first)) > 3_000_000
    ((request_hash, record),) = sink.records.values()
    assert set(record) == {"created"} and len(json.dumps(record)) + len(request_hash) < 200
    time.sleep(1.1)  # a rebuilt answer must keep the first answer's time, not take a new one
    again, replayed = await svc.submit_batch(raw, caller="key_a", key="k-1")
    assert replayed and again == first
    one = json.dumps({"completion_id": CID, "label": "up"}).encode()
    answer, _ = await svc.submit_one(one, caller="key_a", key="k-2")
    assert await svc.submit_one(one, caller="key_a", key="k-2") == (answer, True)


async def test_a_record_of_an_older_version_holds_the_whole_answer_and_is_answered_as_is():
    sink = _Sink()
    svc = FeedbackService(Settings(), sink)
    one = json.dumps({"completion_id": CID, "label": "up"}).encode()
    first, _ = await svc.submit_one(one, caller="key_a", key="k")
    old = {**first, "id": "fb-" + "0" * 32}  # as stored before records were small
    sink.records[("key_a", "k")] = (sink.records[("key_a", "k")][0], old)
    assert await svc.submit_one(one, caller="key_a", key="k") == (old, True)


async def test_a_key_reused_with_another_body_gets_other_ids():
    """Should a key's record have expired, another body must not collide with the first's items."""
    svc = FeedbackService(Settings(), _Sink())
    up = json.dumps({"completion_id": CID, "label": "up"}).encode()
    down = json.dumps({"completion_id": CID, "label": "down"}).encode()
    a, _ = await svc.submit_one(up, caller="key_a", key="k")
    b, _ = await FeedbackService(Settings(), _Sink()).submit_one(down, caller="key_a", key="k")
    c, _ = await FeedbackService(Settings(), _Sink()).submit_one(up, caller="key_a", key="k")
    assert a["id"] != b["id"] and a["id"] == c["id"]  # the same request, the same stored item


def test_memory_holds_at_most_capacity_and_forgets_at_the_deadline():
    cache = _Expiring(capacity=3)
    now = time.time()
    for i in range(5):
        cache.put(i, f"v{i}", now + 60)
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) == "v4"
    cache.put("old", "gone", now - 1)  # expired already: dropped on the way in
    assert cache.get("old") is None and len(cache) == 3
    cache.put(2, "again", now + 60)  # re-put moves to the back
    cache.put(5, "v5", now + 60)
    assert cache.get(2) == "again" and cache.get(3) is None
