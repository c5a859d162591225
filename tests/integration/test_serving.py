"""The serving path end to end: real gateway + real vLLM (CPU), official openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, API_KEYS, MAX_BODY

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_capital_of_france_greedy(client):
    reply = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=30)
    assert "Paris" in reply.choices[0].message.content
    assert reply.id.startswith("chatcmpl-") and len(reply.id) == len("chatcmpl-") + 32
    assert reply.system_fingerprint == "perennial:base"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_version_header_and_unique_ids(client):
    ids = set()
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=FRANCE, temperature=0, max_tokens=4
        )
        reply = raw.parse()
        assert raw.headers["x-perennial-model-version"] == "base"
        assert raw.headers["x-perennial-completion-id"] == reply.id
        ids.add(reply.id)
    assert len(ids) == 3


def test_stream_reassembles_to_the_same_text(client):
    messages = [{"role": "user", "content": "Name three colors."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=24)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id != whole.id
    assert all(c.system_fingerprint == "perennial:base" for c in chunks)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=5, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_parameters_pass_through(client):
    two = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        n=2,
        temperature=1.0,
        seed=7,
        max_completion_tokens=6,
        logprobs=True,
        top_logprobs=2,
    )
    assert len(two.choices) == 2
    assert two.usage.completion_tokens <= 12
    assert len(two.choices[0].logprobs.content[0].top_logprobs) == 2
    again = client.chat.completions.create(
        model=MODEL, messages=FRANCE, n=2, temperature=1.0, seed=7, max_completion_tokens=6
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in two.choices]
    stopped = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=30, stop=["Paris"]
    )
    assert "Paris" not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"


def test_response_format_json_object(client):
    import json

    reply = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=40,
        messages=[{"role": "user", "content": "Give a JSON object with a key 'city'."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "city",
                "schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        },
    )
    assert isinstance(json.loads(reply.choices[0].message.content)["city"], str)


def test_models_lists_served_model_and_version(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].model_extra["version"] == "base"


def test_health(server):
    body = httpx.get(server.url + "/health").json()
    assert body["status"] == "ok" and body["engine"] == "ok" and body["version"] == "base"


# --- errors: every one in the OpenAI envelope, with the right status ---------------------------


def _post(server, body: bytes | dict, key: str | None = API_KEYS[0], path="/v1/chat/completions"):
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
    return httpx.post(server.url + path, headers=headers, timeout=60, **kwargs)


def _envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error


def test_invalid_json(server):
    error = _envelope(_post(server, b'{"model": "x", "messages": [}'), 400)
    assert error["code"] == "invalid_json"
    assert _envelope(_post(server, b"[1, 2]"), 400)["code"] == "invalid_json"
    assert _envelope(_post(server, b""), 400)["code"] == "invalid_json"


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=FRANCE)
    assert info.value.body["param"] == "model" and info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"n": 1000}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": "hello"}, "messages"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"request_id": "mine"}, "request_id"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_bad_parameter_values(server, extra, param):
    body = {"model": MODEL, "messages": FRANCE, **extra}
    error = _envelope(_post(server, body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_engine_rejects_what_it_cannot_do(server):
    # Passes our validation; the engine refuses (prompt longer than the context): a 400, not 500.
    long = [{"role": "user", "content": "word " * 3000}]
    error = _envelope(_post(server, {"model": MODEL, "messages": long, "max_tokens": 5}), 400)
    assert error["message"]


def test_oversized_body(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}
    error = _envelope(_post(server, body), 413)
    assert error["code"] == "request_too_large"


def test_chunked_oversized_body(server):
    def chunks():
        yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"y" * 1024
        yield b'"}]}'

    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {API_KEYS[0]}", "content-type": "application/json"},
    )
    assert _envelope(response, 413)["code"] == "request_too_large"


def test_api_key_required(server):
    assert _envelope(_post(server, {"model": MODEL, "messages": FRANCE}, key=None), 401)
    assert _envelope(_post(server, {"model": MODEL, "messages": FRANCE}, key="sk-wrong"), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()
    # the second configured key works too
    ok = _post(server, {"model": MODEL, "messages": FRANCE, "max_tokens": 2}, key=API_KEYS[1])
    assert ok.status_code == 200


def test_admin_routes_need_the_admin_key(server):
    url = server.url + "/admin/engine"
    assert _envelope(httpx.get(url), 401)
    assert _envelope(httpx.get(url, headers={"authorization": f"Bearer {API_KEYS[0]}"}), 401)
    ok = httpx.get(url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert ok.status_code == 200 and ok.json()["state"] == "ready"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/collective_rpc"),
        ("POST", "/update_weight_version"),
        ("GET", "/weight_info"),
        ("POST", "/tokenize"),
        ("POST", "/v1/load_lora_adapter"),
        ("POST", "/reset_prefix_cache"),
        ("GET", "/is_paused"),
    ],
)
def test_engine_routes_are_not_reachable(server, method, path):
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.request(method, server.url + path, headers=headers, json={})
    assert response.status_code in (404, 405)
    assert "error" in response.json()


def test_metrics(server, client):
    client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=3)
    _post(server, b"{")
    text = httpx.get(server.url + "/metrics").text
    assert 'perennial_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert 'perennial_request_latency_seconds_bucket{le="0.005",route="/v1/chat/completions"}' in text
    assert 'perennial_tokens_total{kind="completion"}' in text
    assert 'perennial_errors_total{type="invalid_request_error"}' in text
    assert "perennial_engine_up 1.0" in text
    assert "perennial_ingest_dead_letters 0.0" in text  # the ingest sink's gauges are registered
    assert "perennial_ingest_writer_pending " in text


def test_chats_in_flight_are_counted_while_served_and_never_leak(server, client):
    """The embedded learner yields to this count; a leak would slow every round to its cap."""

    def in_flight() -> float:
        for line in httpx.get(server.url + "/metrics").text.splitlines():
            if line.startswith("perennial_chats_in_flight "):
                return float(line.split()[1])
        raise AssertionError("no perennial_chats_in_flight gauge")

    stream = client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=8, stream=True)
    next(iter(stream))  # the first chunk is out: the chat is being served
    assert in_flight() == 1.0
    for _ in stream:
        pass
    client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=10**9)
    assert in_flight() == 0.0
