"""The SDK's retry policy and error mapping, against a FAKE gateway (pure client logic):
retried feedback keeps its Idempotency-Key, Retry-After is honoured, 4xx is never retried,
non-idempotent admin calls are not repeated, transport failures get their own exceptions."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from clients import (
    AsyncPerennial,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    Perennial,
    PerennialAPIError,
    PerennialConnectionError,
    PerennialTimeoutError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    UnexpectedResponseError,
)
from clients.errors import api_error
from clients.transport import parse_retry_after
from tests.support.fake_gateway import FEEDBACK, Canned, FakeGateway, envelope

FAST = RetryPolicy(max_retries=3, backoff=0.01, max_backoff=0.05)
CID = FEEDBACK["completion_id"]


def unavailable(retry_after: str = "0") -> Canned:
    return Canned(503, envelope(503, "storage down", "store_unavailable"), {"Retry-After": retry_after})


def test_feedback_retried_after_503s_with_the_same_idempotency_key():
    with FakeGateway([unavailable(), unavailable(), Canned(200, FEEDBACK)]) as fake:
        with Perennial(fake.url, api_key="sk-x", retry=FAST) as client:
            stored = client.feedback(CID, label="up")
    assert stored.id == FEEDBACK["id"] and stored.replayed is False
    keys = [r.headers.get("idempotency-key") for r in fake.received]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1
    assert {r.headers["authorization"] for r in fake.received} == {"Bearer sk-x"}
    assert len({r.body for r in fake.received}) == 1  # same body every time


def test_each_logical_call_gets_its_own_key_and_a_given_key_is_kept():
    batch = {"object": "list", "data": [FEEDBACK]}
    with FakeGateway([Canned(200, FEEDBACK), Canned(200, FEEDBACK), Canned(200, batch)]) as fake:
        with Perennial(fake.url, retry=FAST) as client:
            client.feedback(CID, reward=0.5)
            client.feedback(CID, reward=0.5)
            client.feedback_batch([{"completion_id": CID, "label": "down"}], idempotency_key="mine-1")
    keys = [r.headers["idempotency-key"] for r in fake.received]
    assert keys[0] != keys[1] and keys[2] == "mine-1"


def test_retry_after_is_honoured():
    with FakeGateway([unavailable("1"), Canned(200, FEEDBACK)]) as fake:
        with Perennial(fake.url, retry=RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.01)) as client:
            started = time.monotonic()
            client.feedback(CID, label="up")
            waited = time.monotonic() - started
    assert len(fake.received) == 2 and waited >= 0.95


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, BadRequestError, "invalid_value"),
        (401, AuthenticationError, "invalid_api_key"),
        (404, NotFoundError, "completion_not_found"),
        (409, ConflictError, "idempotency_key_reused"),
        (413, PayloadTooLargeError, "body_too_large"),
    ],
)
def test_4xx_is_raised_at_once_with_the_envelope(status, cls, code):
    body = envelope(status, f"problem {status}", code, param="label")
    with FakeGateway([Canned(status, body), Canned(200, FEEDBACK)]) as fake:
        with Perennial(fake.url, retry=FAST) as client, pytest.raises(cls) as caught:
            client.feedback(CID, label="up")
    assert len(fake.received) == 1
    err = caught.value
    assert (err.status, err.code, err.param, err.message) == (status, code, "label", f"problem {status}")
    assert str(err) == f"error {status} {code}: problem {status}"


def test_429_and_5xx_give_up_after_max_retries():
    with FakeGateway([Canned(429, envelope(429, "slow down"), {"Retry-After": "0"})]) as fake:
        with Perennial(fake.url, retry=FAST) as client, pytest.raises(RateLimitError):
            client.feedback(CID, label="up")
    assert len(fake.received) == FAST.max_retries + 1
    with FakeGateway([Canned(502, b"<html>bad gateway</html>", {"content-type": "text/html"})]) as fake:
        with Perennial(fake.url, admin_key="pk", retry=FAST) as client, pytest.raises(ServerError) as caught:
            client.admin.versions()
    assert len(fake.received) == FAST.max_retries + 1
    assert caught.value.status == 502 and "bad gateway" in caught.value.message


def test_non_idempotent_admin_calls_are_not_repeated_after_an_answer():
    with FakeGateway([unavailable(), Canned(200, {"serving": "v2", "previous": "base", "swap": {}})]) as fake:
        with Perennial(fake.url, admin_key="pk", retry=FAST) as client, pytest.raises(ServerError):
            client.admin.promote("v2", force=True, reason="test")
    assert len(fake.received) == 1
    assert fake.received[0].path == "/admin/versions/v2/promote"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_a_connection_error():
    with Perennial(f"http://127.0.0.1:{free_port()}", retry=FAST) as client:
        with pytest.raises(PerennialConnectionError, match="cannot connect"):
            client.admin.versions()
        with pytest.raises(PerennialConnectionError):
            client.chat("hi", model="m")


def test_a_slow_answer_is_a_timeout_and_idempotent_calls_retry_it():
    with FakeGateway([Canned(200, FEEDBACK, delay_s=1.0)]) as fake:
        with Perennial(fake.url, timeout=0.2, retry=RetryPolicy(max_retries=1, backoff=0.01)) as client:
            with pytest.raises(PerennialTimeoutError):
                client.feedback(CID, label="up")
    assert len(fake.received) == 2


async def test_async_client_retries_with_the_same_key():
    with FakeGateway([unavailable(), Canned(200, FEEDBACK)]) as fake:
        async with AsyncPerennial(fake.url, api_key="sk-y", retry=FAST) as client:
            stored = await client.feedback(CID, label="up")
            with pytest.raises(NotFoundError):
                fake.script = [Canned(404, envelope(404, "no round 9", "round_not_found"))]
                await client.admin.round(9)
    assert stored.completion_id == CID
    first, second = fake.received[:2]
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_retry_delays_grow_with_jitter_and_respect_caps():
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0, max_retry_after=10.0)
    assert [policy.delay(a, rand=lambda: 1.0) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.delay(a, rand=lambda: 0.0) for a in range(3)] == [0.25, 0.5, 1.0]
    assert policy.delay(0, "3") == 3.0 and policy.delay(0, "3600") == 10.0


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None and parse_retry_after("-4") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(later) <= 30


def test_an_unreadable_success_answer_is_an_sdk_error_not_a_crash():
    with FakeGateway([Canned(200, {"unexpected": True})]) as fake:
        with Perennial(fake.url, admin_key="pk", retry=FAST) as client:
            with pytest.raises(UnexpectedResponseError, match="/admin/versions"):
                client.admin.versions()
    with FakeGateway([Canned(200, b"not json", {"content-type": "text/plain"})]) as fake:
        with Perennial(fake.url, retry=FAST) as client, pytest.raises(UnexpectedResponseError):
            client.feedback(CID, label="up")


def test_error_classes_from_any_body():
    assert type(api_error(503, {"error": {"message": "m"}})) is ServerError
    assert type(api_error(422, b'{"error": {"message": "m", "param": "x"}}')) is BadRequestError
    assert type(api_error(418, "teapot")) is PerennialAPIError
    assert api_error(500, "").message == "HTTP 500 with no error body"
    assert api_error(409, {"message": "flat", "code": "c"}).code == "c"  # openai's unwrapped body
