"""Per-key quotas and the token budget (pure logic, and the middleware on a bare app), and the
allow-list of request fields the gateway forwards to the engine."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.auth import KeyRing
from server.chat.protocol import ChatCompletionRequest, CompletionRequest
from server.chat.service import COMPLETION, ChatService, ServedModel
from server.errors import APIError, install_error_handlers, validation_error
from server.middleware import QuotaMiddleware
from server.quotas import BudgetError, KeyQuotas, limited, tokens_to_send
from server.settings import Settings

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the limiter ----------------------------------------------------------------------------


def test_a_minutes_burst_then_retry_after_until_the_bucket_refills():
    clock = Clock()
    quotas = KeyQuotas(per_minute=3, concurrent=10, clock=clock)
    for _ in range(3):
        assert quotas.acquire("a") is None
        quotas.release("a")
    assert quotas.acquire("a") == 20  # one request per 20 s
    clock.now = 19.0
    assert quotas.acquire("a") == 1
    clock.now = 20.0
    assert quotas.acquire("a") is None


def test_keys_have_their_own_buckets():
    quotas = KeyQuotas(per_minute=1, concurrent=10, clock=Clock())
    assert quotas.acquire("a") is None
    assert quotas.acquire("a") is not None
    assert quotas.acquire("b") is None


def test_concurrency_is_held_until_release_and_a_refusal_costs_nothing():
    clock = Clock()
    quotas = KeyQuotas(per_minute=60, concurrent=2, clock=clock)
    assert quotas.acquire("a") is None and quotas.acquire("a") is None
    assert quotas.acquire("a") == 1 and quotas.in_flight("a") == 2
    quotas.release("a")
    assert quotas.acquire("a") is None  # the refused one spent no token: 3 of 60 used
    quotas.release("a")
    quotas.release("a")
    quotas.release("a")  # more releases than acquires never go negative
    assert quotas.in_flight("a") == 0


def test_limited_routes():
    assert limited("POST", "/v1/chat/completions") and limited("post", "/v1/feedback/batch")
    assert not limited("GET", "/v1/models") and not limited("POST", "/admin/rollback")


# --- the token budget -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "choices", "sent"),
    [(None, 1, 1024), (None, 8, 1024), (None, 64, 128), (16, 64, 16), (0, 4, 0), (1024, 8, 1024)],
)
def test_tokens_sent(requested, choices, sent):
    assert tokens_to_send(requested, choices=choices, cap=1024, budget=8192) == sent


@pytest.mark.parametrize(
    ("requested", "choices", "param"),
    [(1025, 1, "max_tokens"), (1024, 9, "max_tokens"), (None, 8193, "n")],
)
def test_over_the_budget_names_the_field(requested, choices, param):
    with pytest.raises(BudgetError) as caught:
        tokens_to_send(requested, choices=choices, cap=1024, budget=8192)
    assert caught.value.param == param


# --- the chat service: budget, allow-list, what the engine gets ----------------------------


@pytest.fixture
def chat() -> ChatService:
    settings = Settings(admin_key="pk-unit", max_completion_tokens=100, max_request_tokens=400, max_n=8)
    return ChatService(settings, None, ServedModel("m", "base"), None, None)


def test_engine_always_gets_max_tokens(chat):
    request = chat.validate({**CHAT, "ignore_eos": True, "n": 2})
    body = chat.engine_body(request, "chatcmpl-1", "chatcmpl-")
    assert body["max_tokens"] == 100 and body["ignore_eos"] is True
    request = chat.validate({**CHAT, "max_completion_tokens": 7})
    body = chat.engine_body(request, "chatcmpl-1", "chatcmpl-")
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body
    request = chat.validate({**CHAT, "n": 8})  # no max_tokens: lowered to fit the budget
    assert chat.engine_body(request, "chatcmpl-1", "chatcmpl-")["max_tokens"] == 50
    request = chat.validate({"model": "m", "prompt": ["a", "b"]}, COMPLETION)  # OpenAI's default
    assert chat.engine_body(request, "cmpl-1", "cmpl-")["max_tokens"] == 16
    request = chat.validate({"model": "m", "prompt": ["a"] * 64}, COMPLETION)  # ... lowered to fit
    assert chat.engine_body(request, "cmpl-1", "cmpl-")["max_tokens"] == 6


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "max_tokens": 101}, "max_tokens"),
        ({**CHAT, "max_completion_tokens": 100, "n": 5}, "max_completion_tokens"),
        ({**CHAT, "max_tokens": 10, "min_tokens": 11}, "min_tokens"),
        ({"model": "m", "prompt": ["a"] * 10, "max_tokens": 50}, "max_tokens"),
    ],
)
def test_budget_refusals_name_the_field(chat, body, param):
    flavor = COMPLETION if "prompt" in body else None
    with pytest.raises(APIError) as caught:
        chat.validate(body, flavor) if flavor else chat.validate(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_dropped_fields_never_reach_the_engine(chat):
    request = chat.validate(
        {**CHAT, "store": True, "metadata": {"a": "b"}, "service_tier": "auto", "top_k": 3}
    )
    body = chat.engine_body(request, "chatcmpl-1", "chatcmpl-")
    assert body["top_k"] == 3 and not {"store", "metadata", "service_tier"} & set(body)


def test_structured_outputs_keep_their_wire_name(chat):
    request = chat.validate({**CHAT, "structured_outputs": {"json": {"type": "object"}}})
    body = chat.engine_body(request, "chatcmpl-1", "chatcmpl-")
    assert body["structured_outputs"] == {"json": {"type": "object"}}


def param_of(model, body: dict) -> str | None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    error = validation_error(caught.value)
    assert error.status == 400
    return error.param


def deep(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


BIG = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"guided_json": {}}, "guided_json"),
        ({"chat_template": "{{ x }}"}, "chat_template"),
        ({"logits_processors": ["os.system"]}, "logits_processors"),
        ({"vllm_xargs": {}}, "vllm_xargs"),
        ({"use_beam_search": True}, "use_beam_search"),
        ({"prompt_logprobs": -1}, "prompt_logprobs"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "b", "schema": BIG}}},
            "response_format",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": deep(40)}}},
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"$ref": "http://x/s.json"}},
                }
            },
            "response_format",
        ),
        ({"structured_outputs": {"regex": "(a)\\1"}}, "structured_outputs.regex"),
        ({"structured_outputs": {"regex": "a" * 1001}}, "structured_outputs.regex"),
        ({"structured_outputs": {"grammar": "x" * 20_001}}, "structured_outputs.grammar"),
        ({"structured_outputs": {"json": "{not json"}}, "structured_outputs.json"),
        ({"structured_outputs": {"json": deep(40)}}, "structured_outputs.json"),
        ({"structured_outputs": {"choice": ["a"] * 65}}, "structured_outputs.choice"),
        ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag"),
        ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
        ({"structured_outputs": {}}, "structured_outputs"),
    ],
)
def test_unlisted_and_unbounded_fields_are_refused(patch, param):
    assert param_of(ChatCompletionRequest, {**CHAT, **patch}) == param


def test_completion_refuses_chat_fields():
    assert param_of(CompletionRequest, {"model": "m", "prompt": "x", "tools": []}) == "tools"


# --- the middleware -------------------------------------------------------------------------


def quota_app(per_minute: int) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.state.keys = KeyRing(["sk-a", "sk-b"], "pk-admin")
    app.add_middleware(QuotaMiddleware, quotas=KeyQuotas(per_minute, 10))

    @app.post("/v1/echo")
    async def echo() -> dict:
        return {"ok": True}

    @app.get("/v1/echo")
    async def read() -> dict:
        return {"ok": True}

    return TestClient(app)


def test_middleware_answers_429_in_the_envelope_per_key():
    client = quota_app(per_minute=2)
    a, b = {"authorization": "Bearer sk-a"}, {"authorization": "Bearer sk-b"}
    assert client.post("/v1/echo", headers={"authorization": "Bearer wrong"}).status_code == 200
    assert [client.post("/v1/echo", headers=a).status_code for _ in range(2)] == [200, 200]
    refused = client.post("/v1/echo", headers=a)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert client.post("/v1/echo", headers=b).status_code == 200
    assert client.get("/v1/echo", headers=a).status_code == 200  # reads are not counted
