"""The feedback API and the admin interaction views through real gateways.

Gateways attach to the shared vLLM engine (``engine_url``), so they start in seconds: one on
the embedded SQLite default (direct writes), one on Postgres + Redis (stream + consumer group).
Every test that does not depend on the storage mode runs on one of them; the rest on both.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from harness.processes import start_server
from harness.stores import REDIS_URL, delete_prefix
from server.auth import key_id
from tests.conftest import ADMIN_KEY, API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
USER = {"authorization": f"Bearer {API_KEYS[0]}"}
OTHER_USER = {"authorization": f"Bearer {API_KEYS[1]}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
TEXT_MAX, METADATA_MAX, BATCH_MAX = 1000, 512, 5


def gateway_env(model_dir, engine_url, **extra: str) -> dict[str, str]:
    return {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ENGINE_URL": engine_url,
        "PERENNIAL_API_KEYS": ",".join(API_KEYS),
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_FEEDBACK_TEXT_MAX_CHARS": str(TEXT_MAX),
        "PERENNIAL_FEEDBACK_METADATA_MAX_BYTES": str(METADATA_MAX),
        "PERENNIAL_FEEDBACK_BATCH_MAX": str(BATCH_MAX),
        **extra,
    }


@pytest.fixture(scope="module", params=["sqlite", "redis+postgres"])
def gw(request, tmp_path_factory, model_dir, engine_url):
    extra = {}
    prefix = f"ptest-{uuid.uuid4().hex[:10]}"
    if request.param == "redis+postgres":
        pg_url = request.getfixturevalue("pg_url")
        extra = {
            "PERENNIAL_DATABASE_URL": pg_url,
            "PERENNIAL_REDIS_URL": REDIS_URL,
            "PERENNIAL_REDIS_PREFIX": prefix,
        }
    running = start_server(tmp_path_factory.mktemp("gw"), gateway_env(model_dir, engine_url, **extra))
    running.mode = request.param
    yield running
    running.stop()
    delete_prefix(REDIS_URL, prefix)


def chat(gw, content: str = "Say hi.", **extra) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 3,
        "temperature": 0,
        **extra,
    }
    response = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=USER, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def cid(gw) -> str:
    return chat(gw)["id"]


def post(gw, path: str, body, headers=USER, key: str | None = None) -> httpx.Response:
    headers = {**headers, **({"Idempotency-Key": key} if key else {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gw.url + path, content=content, headers=headers, timeout=30)


def poll(fn, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def all_feedback(gw, completion_id: str) -> list[dict]:
    r = httpx.get(gw.url + "/v1/feedback", params={"completion_id": completion_id}, headers=USER)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def stored_feedback(gw, completion_id: str, n: int) -> list[dict]:
    """The stored feedback on a completion, once there are at least ``n`` items."""
    return poll(lambda: data if len(data := all_feedback(gw, completion_id)) >= n else None) or []


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --- the happy path ------------------------------------------------------------------------------
def test_chat_rate_correct_reference_all_stored(gw):
    reply = chat(gw, "What is the capital of France?", max_tokens=8)
    cid = reply["id"]
    items = [
        {"completion_id": cid, "label": "up", "task": "geo", "metadata": {"ui": "thumbs"}},
        {"completion_id": cid, "reward": -0.25, "correction": "Paris."},
        {"completion_id": cid, "reference": "Paris", "verifier": {"type": "contains"}},
    ]
    accepted = [post(gw, "/v1/feedback", item) for item in items]
    assert [r.status_code for r in accepted] == [200, 200, 200], [r.text for r in accepted]
    first = accepted[0].json()
    assert first["object"] == "feedback" and first["id"].startswith("fb-")
    assert first["reward"] == 1.0 and first["label"] == "up" and first["task"] == "geo"
    assert accepted[2].json()["verifier"] == {"type": "contains"}
    stored = stored_feedback(gw, cid, 3)
    assert [f["id"] for f in stored] == [r.json()["id"] for r in accepted]
    assert stored == [r.json() for r in accepted]  # what was answered is what was stored
    page = poll(lambda: _find(gw, cid))
    assert page["response"] == reply["choices"][0]["message"]["content"]
    assert page["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert page["params"]["max_tokens"] == 8 and page["model_version"] == "base"
    assert page["caller"] == key_id(API_KEYS[0]) and API_KEYS[0] not in json.dumps(page)
    assert page["usage"]["completion_tokens"] == reply["usage"]["completion_tokens"]
    assert page["feedback_count"] == 3 and page["finish_reason"] in ("stop", "length")


def _find(gw, cid: str, **params) -> dict | None:
    r = httpx.get(gw.url + "/admin/interactions", params={"limit": 100, **params}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return next((i for i in r.json()["data"] if i["id"] == cid), None)


def test_streamed_reply_is_stored_assembled(gw):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
    }
    text, cid = "", None
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=USER, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                cid = event["id"]
                text += "".join((c.get("delta") or {}).get("content") or "" for c in event["choices"])
    stored = poll(lambda: _find(gw, cid))
    assert stored is not None and stored["stream"] is True
    assert stored["response"] == text and stored["usage"]["completion_tokens"] > 0


# --- validation ----------------------------------------------------------------------------------
CASES = [
    ({"reward": 1.5}, "reward"),
    ({"reward": -1.01}, "reward"),
    ({"reward": "high"}, "reward"),
    ({"label": "meh"}, "label"),
    ({"reward": 0.5, "label": "down"}, "label"),
    ({"reference": "x", "verifier": "bogus"}, "verifier"),
    ({"reference": "abc", "verifier": "number"}, "reference"),
    ({"verifier": {"type": "regex", "pattern": "("}}, "verifier"),
    ({"verifier": {"type": "exact", "tolerance": 1}, "reference": "a"}, "verifier"),
    ({"correction": "x" * (TEXT_MAX + 1)}, "correction"),
    ({"reference": "y" * (TEXT_MAX + 1)}, "reference"),
    ({"label": "up", "metadata": {"blob": "z" * METADATA_MAX}}, "metadata"),
    ({"label": "up", "metadata": ["not", "an", "object"]}, "metadata"),
    ({"label": "up", "task": "t" * 129}, "task"),
    ({"label": "up", "rating": 5}, "rating"),
    ({"label": "up", "choice_index": -1}, "choice_index"),
    ({}, None),  # nothing to learn from
]


@pytest.mark.parametrize(("extra", "param"), CASES)
def test_invalid_feedback_is_refused_naming_the_field(gw, cid, extra, param):
    r = post(gw, "/v1/feedback", {"completion_id": cid, **extra})
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_request_level_errors(gw, cid):
    missing = post(gw, "/v1/feedback", {"label": "up"})
    assert missing.status_code == 400 and error_of(missing)["param"] == "completion_id"
    assert post(gw, "/v1/feedback", b"{not json").status_code == 400
    assert post(gw, "/v1/feedback", b"[1, 2]").status_code == 400
    long_key = post(gw, "/v1/feedback", {"completion_id": cid, "label": "up"}, key="k" * 256)
    assert long_key.status_code == 400 and error_of(long_key)["param"] == "Idempotency-Key"


def test_unknown_completion_is_404(gw):
    r = post(gw, "/v1/feedback", {"completion_id": "chatcmpl-" + "0" * 32, "label": "up"})
    assert r.status_code == 404
    assert error_of(r)["param"] == "completion_id" and error_of(r)["code"] == "completion_not_found"
    listing = httpx.get(gw.url + "/v1/feedback", params={"completion_id": "chatcmpl-x"}, headers=USER)
    assert listing.status_code == 404


def test_batch_all_or_nothing(gw, cid):
    good = [{"completion_id": cid, "reward": r / 10} for r in range(-2, 1)]
    ok = post(gw, "/v1/feedback/batch", {"items": good})
    assert ok.status_code == 200, ok.text
    data = ok.json()["data"]
    assert ok.json()["object"] == "list" and [d["reward"] for d in data] == [-0.2, -0.1, 0.0]
    bad = post(gw, "/v1/feedback/batch", {"items": good + [{"completion_id": cid, "reward": 9}]})
    assert bad.status_code == 400 and error_of(bad)["param"] == "items.3.reward"
    verifier = post(
        gw,
        "/v1/feedback/batch",
        {"items": [good[0], {"completion_id": cid, "reference": "x", "verifier": "nope"}]},
    )
    assert verifier.status_code == 400 and error_of(verifier)["param"] == "items.1.verifier"
    unknown = post(
        gw, "/v1/feedback/batch", {"items": good[:2] + [{"completion_id": "chatcmpl-nope", "label": "up"}]}
    )
    assert unknown.status_code == 404 and error_of(unknown)["param"] == "items.2.completion_id"
    too_many = post(gw, "/v1/feedback/batch", {"items": [good[0]] * (BATCH_MAX + 1)})
    assert too_many.status_code == 400 and error_of(too_many)["param"] == "items"
    assert post(gw, "/v1/feedback/batch", {"items": []}).status_code == 400
    ids = {d["id"] for d in data}
    assert poll(lambda: ids <= {f["id"] for f in all_feedback(gw, cid)})
    time.sleep(1.0)  # the refused batches must not have stored anything
    rewards = [f["reward"] for f in all_feedback(gw, cid) if f["task"] is None]
    assert sorted(r for r in rewards if r is not None and r <= 0) == [-0.2, -0.1, 0.0]


# --- idempotency ---------------------------------------------------------------------------------
def test_idempotency_key(gw, cid):
    key = f"idem-{uuid.uuid4().hex}"
    body = {"completion_id": cid, "reward": 0.7, "task": "idem"}
    first = post(gw, "/v1/feedback", body, key=key)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    # Same body, spelled differently (key order, whitespace): the first answer again.
    same = post(
        gw, "/v1/feedback", b'{ "task":"idem",  "reward":0.7, "completion_id":"%s"}' % cid.encode(), key=key
    )
    assert same.status_code == 200 and same.json() == first.json()
    assert same.headers["idempotent-replayed"] == "true"
    changed = post(gw, "/v1/feedback", {**body, "reward": 0.8}, key=key)
    assert changed.status_code == 409 and error_of(changed)["code"] == "idempotency_key_reused"
    other = post(gw, "/v1/feedback", body, headers=OTHER_USER, key=key)  # not its completion
    assert other.status_code == 404  # keys per caller: test_ownership.py
    batch = post(gw, "/v1/feedback/batch", {"items": [body]}, key=key)  # another route's body
    assert batch.status_code == 409
    want = {first.json()["id"]}
    assert poll(lambda: want <= {f["id"] for f in all_feedback(gw, cid)})
    time.sleep(1.0)  # a replay stored twice would show up now
    assert sorted(f["id"] for f in all_feedback(gw, cid) if f["task"] == "idem") == sorted(want)


def test_batch_idempotency(gw, cid):
    key = f"idem-{uuid.uuid4().hex}"
    body = {"items": [{"completion_id": cid, "label": "down", "task": "batch-idem"}] * 2}
    first = post(gw, "/v1/feedback/batch", body, key=key)
    again = post(gw, "/v1/feedback/batch", body, key=key)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert len({d["id"] for d in first.json()["data"]}) == 2


# --- auth ----------------------------------------------------------------------------------------
def test_auth(gw, cid):
    body = {"completion_id": cid, "label": "up"}
    assert post(gw, "/v1/feedback", body, headers={}).status_code == 401
    assert post(gw, "/v1/feedback", body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(gw.url + "/v1/feedback", params={"completion_id": cid}).status_code == 401
    for path in ("/admin/interactions", "/admin/interactions/export", "/admin/store"):
        assert httpx.get(gw.url + path, headers=USER).status_code == 401
        assert httpx.get(gw.url + path, headers=ADMIN).status_code == 200


# --- admin views ---------------------------------------------------------------------------------
def test_admin_filters_paging_and_export(gw):
    rated, unrated = chat(gw, "One.")["id"], chat(gw, "Two.")["id"]
    assert post(gw, "/v1/feedback", {"completion_id": rated, "label": "up"}).status_code == 200
    assert poll(lambda: (_find(gw, rated) or {}).get("feedback_count") == 1)
    assert _find(gw, unrated) is not None
    assert _find(gw, rated, has_feedback="true") and not _find(gw, unrated, has_feedback="true")
    assert _find(gw, unrated, has_feedback="false") and not _find(gw, rated, has_feedback="false")
    assert _find(gw, rated, version="base") and not _find(gw, rated, version="v999")
    assert not _find(gw, rated, since=time.time() + 3600)
    assert _find(gw, rated, since="2020-01-01T00:00:00Z", until=time.time() + 60)
    page1 = httpx.get(gw.url + "/admin/interactions", params={"limit": 1}, headers=ADMIN).json()
    page2 = httpx.get(
        gw.url + "/admin/interactions", params={"limit": 1, "after": page1["last_id"]}, headers=ADMIN
    ).json()
    assert page1["has_more"] and page1["data"][0]["id"] == unrated  # newest first
    assert page2["data"][0]["id"] == rated
    bad = httpx.get(gw.url + "/admin/interactions", params={"after": "chatcmpl-nope"}, headers=ADMIN)
    assert bad.status_code == 404 and error_of(bad)["param"] == "after"
    assert httpx.get(gw.url + "/admin/interactions", params={"limit": 0}, headers=ADMIN).status_code == 400
    export = httpx.get(gw.url + "/admin/interactions/export", params={"has_feedback": "true"}, headers=ADMIN)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    mine = next(line for line in lines if line["id"] == rated)
    assert [f["label"] for f in mine["feedback"]] == ["up"]
    assert all(line["feedback"] for line in lines) and unrated not in {x["id"] for x in lines}
    listed = httpx.get(
        gw.url + "/admin/interactions",
        headers=ADMIN,
        params={"has_feedback": "true", "order": "asc", "limit": 500},
    ).json()
    assert [x["id"] for x in lines][:500] == [x["id"] for x in listed["data"]]  # stored order
