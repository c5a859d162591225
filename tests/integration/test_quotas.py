"""Quotas through a real gateway, driven by the official ``openai`` client: the token budget
always holds, only the allow-listed fields reach the engine, schemas for constrained decoding
are bounded, and a key that floods gets 429 with Retry-After while another key is served.

The gateway attaches to the shared vLLM engine (``engine_url``), so it starts in seconds; its
limits are small so the budget shows in a few tokens. Clients never retry (``max_retries=0``):
the ``openai`` client retries a 429 by default.
"""

from __future__ import annotations

import openai
import pytest

from harness.processes import start_server
from tests.conftest import ADMIN_KEY, API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
CAP, BUDGET, PER_MINUTE = 8, 24, 30
ASK = [{"role": "user", "content": "Count from one to one hundred."}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory, model_dir, engine_url):
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ENGINE_URL": engine_url,
        "PERENNIAL_API_KEYS": ",".join(API_KEYS),
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_MAX_COMPLETION_TOKENS": str(CAP),
        "PERENNIAL_MAX_REQUEST_TOKENS": str(BUDGET),
        "PERENNIAL_KEY_REQUESTS_PER_MINUTE": str(PER_MINUTE),
    }
    running = start_server(tmp_path_factory.mktemp("quotas"), env)
    yield running
    running.stop()


def client_of(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def alpha(gw):
    with client_of(gw, API_KEYS[0]) as c:
        yield c


def test_no_max_tokens_with_ignore_eos_and_n_is_capped(alpha):
    reply = alpha.chat.completions.create(
        model=MODEL, messages=ASK, n=3, temperature=1, extra_body={"ignore_eos": True}
    )
    assert len(reply.choices) == 3
    assert all(choice.finish_reason == "length" for choice in reply.choices)
    assert reply.usage.completion_tokens <= CAP * 3
    text = alpha.completions.create(model=MODEL, prompt=["One,", "Two,"], extra_body={"ignore_eos": True})
    assert text.usage.completion_tokens <= CAP * 2


def test_a_request_over_its_budget_is_refused_naming_the_field(alpha):
    with pytest.raises(openai.BadRequestError) as caught:
        alpha.chat.completions.create(model=MODEL, messages=ASK, n=4, max_completion_tokens=CAP)
    assert caught.value.body["param"] == "max_completion_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        alpha.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, extra_body={"min_tokens": 5})
    assert caught.value.body["param"] == "min_tokens"


def test_unlisted_fields_are_refused_and_harmless_ones_dropped(alpha):
    for extra in ({"guided_json": {"type": "object"}}, {"chat_template": "{{ 7 * 7 }}"}, {"priority": -10}):
        with pytest.raises(openai.BadRequestError) as caught:
            alpha.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2, extra_body=extra)
        assert caught.value.body["param"] == next(iter(extra))
    reply = alpha.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=2, store=True, metadata={"team": "a"}, extra_body={"top_k": 5}
    )
    assert reply.usage.completion_tokens <= 2


def test_oversized_schemas_are_refused(alpha):
    big = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    response_format = {"type": "json_schema", "json_schema": {"name": "big", "schema": big}}
    with pytest.raises(openai.BadRequestError) as caught:
        alpha.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=2, response_format=response_format
        )
    assert caught.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as caught:
        alpha.responses.create(
            model=MODEL,
            input="hi",
            max_output_tokens=2,
            text={"format": {"type": "json_schema", "name": "big", "schema": big}},
        )
    assert caught.value.body["param"] == "text.format.schema"
    with pytest.raises(openai.BadRequestError) as caught:
        alpha.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=2, extra_body={"structured_outputs": {"regex": "(a)\\1"}}
        )
    assert caught.value.body["param"] == "structured_outputs.regex"


def test_a_flood_from_one_key_gets_429_while_another_key_is_served(gw, alpha):
    with client_of(gw, API_KEYS[1]) as beta:
        refused = None
        for _ in range(PER_MINUTE + 1):
            try:  # an unknown model: refused by the route in microseconds, still counted
                beta.chat.completions.create(model="no-such-model", messages=ASK, max_tokens=1)
            except openai.NotFoundError:
                continue
            except openai.RateLimitError as exc:
                refused = exc
                break
    assert refused is not None, "no 429 after a minute's worth of requests"
    assert int(refused.response.headers["retry-after"]) >= 1
    assert refused.body["type"] == "rate_limit_error" and refused.body["code"] == "rate_limit_exceeded"
    reply = alpha.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2)
    assert reply.choices[0].message.content is not None
