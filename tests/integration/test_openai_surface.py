"""Text completions, the Responses API and tool calling through the gateway, driven by the
official ``openai`` client: ids and version reporting, logging, feedback on their ids, and a
tool-call reference that the learner's own scoring path uses.

The session's gateway runs on the defaults, which for the bundled model are the ``chatml-tools``
template and the ``pythonic`` parser (engine/chat_format.py); /v1/models says so.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
USER = {"authorization": f"Bearer {API_KEYS[0]}"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def stored(server, interaction_id: str, timeout: float = 20.0) -> dict:
    """The interaction as the admin API shows it, once the ingest path has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = httpx.get(server.url + "/admin/interactions", params={"limit": 50}, headers=ADMIN).json()
        for row in page["data"]:
            if row["id"] == interaction_id:
                return row
        time.sleep(0.2)
    raise AssertionError(f"{interaction_id} was not stored within {timeout} s")


def feedback(server, completion_id: str, **fields) -> httpx.Response:
    body = {"completion_id": completion_id, **fields}
    return httpx.post(server.url + "/v1/feedback", json=body, headers=USER, timeout=30)


# --- /v1/completions -----------------------------------------------------------------------


def test_completion_greedy_is_stamped_logged_and_rateable(client, server):
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    reply = raw.parse()
    assert reply.id.startswith("cmpl-") and len(reply.id) == len("cmpl-") + 32
    assert reply.system_fingerprint == "perennial:base"
    assert raw.headers["x-perennial-model-version"] == "base"
    assert "Paris" in reply.choices[0].text
    row = stored(server, reply.id)
    assert row["kind"] == "completion" and row["messages"] == []
    assert row["params"]["prompt"] == "The capital of France is"
    assert row["response"] == reply.choices[0].text
    assert feedback(server, reply.id, label="up").status_code == 200


def test_completion_stream_equals_whole(client):
    whole = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=8, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="1, 2, 3,",
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("cmpl-")
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_echo_logprobs_of_token_prompts(client, engine_url):
    """What likelihood evaluations send: token-id prompts, echo, logprobs, one new token."""
    body = dict(model=MODEL, prompt=[[504, 3575, 282, 4649, 314], [1, 2, 3]], max_tokens=1, temperature=0)
    reply = client.completions.create(**body, echo=True, logprobs=1)
    direct = httpx.post(
        engine_url + "/v1/completions", json={**body, "echo": True, "logprobs": 1}, timeout=60
    ).json()
    assert len(reply.choices) == 2
    for ours, theirs in zip(reply.choices, direct["choices"], strict=True):
        assert ours.logprobs.token_logprobs == theirs["logprobs"]["token_logprobs"]
        assert ours.logprobs.tokens == theirs["logprobs"]["tokens"]
    # echo with max_tokens 0: the prompt's own log-probabilities, nothing generated
    scored = client.completions.create(
        model=MODEL, prompt="Paris is in France", max_tokens=0, echo=True, logprobs=0
    )
    assert scored.choices[0].text == "Paris is in France"
    assert scored.choices[0].logprobs.token_logprobs[0] is None
    assert all(lp < 0 for lp in scored.choices[0].logprobs.token_logprobs[1:])


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 100_000}, "max_tokens"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
        ({"prompt": "x", "best_of": 2}, "best_of"),
        ({"prompt": "x", "suffix": "and then"}, "suffix"),
        ({"prompt": "x", "prompt_embeds": "AAAA"}, "prompt_embeds"),
        ({"prompt": ["x"] * 65}, "prompt"),
    ],
)
def test_completion_bad_input_is_a_400_naming_the_parameter(server, extra, param):
    r = httpx.post(server.base_url + "/completions", json={"model": MODEL, **extra}, headers=USER, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_completion_needs_a_key(server):
    r = httpx.post(server.base_url + "/completions", json={"model": MODEL, "prompt": "x"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# --- /v1/responses -------------------------------------------------------------------------


def test_response_create_retrieve_chain_and_feedback(client, server):
    first = client.responses.create(
        model=MODEL,
        instructions="Answer in one short sentence.",
        input="What is the capital of France?",
        max_output_tokens=16,
        temperature=0,
        metadata={"ticket": "T-1"},
    )
    assert first.id.startswith("resp_") and first.object == "response"
    assert first.status == "completed" and "Paris" in first.output_text
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.metadata == {"ticket": "T-1"}
    # the same reply as the chat it translates to
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert first.output_text == chat.choices[0].message.content

    follow = client.responses.create(
        model=MODEL, input="And of Italy?", previous_response_id=first.id, max_output_tokens=16, temperature=0
    )
    row = stored(server, follow.id)
    assert row["kind"] == "response"
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]  # instructions not carried
    assert row["messages"][1]["content"] == first.output_text
    assert row["params"]["previous_response_id"] == first.id

    again = client.responses.retrieve(first.id)
    assert again.output_text == first.output_text and again.metadata == {"ticket": "T-1"}
    assert feedback(server, first.id, reference="Paris", verifier="contains").status_code == 200


def test_response_stream_events(client):
    events = list(
        client.responses.create(model=MODEL, input="Name a color.", max_output_tokens=40, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output_text == text
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == text
    question = "What is the capital of France?"
    with client.responses.stream(model=MODEL, input=question, max_output_tokens=64, temperature=0) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text


def test_response_store_false_is_not_kept(client):
    reply = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def test_response_of_another_key_is_not_found(client, server):
    reply = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4)
    other = httpx.get(
        server.base_url + f"/responses/{reply.id}", headers={"authorization": f"Bearer {API_KEYS[1]}"}
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "response_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools.0.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input.0.content.0",
        ),
        ({"input": "x", "max_output_tokens": 100_000}, "max_output_tokens"),
        ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
    ],
)
def test_response_bad_input(server, extra, param):
    r = httpx.post(server.base_url + "/responses", json={"model": MODEL, **extra}, headers=USER, timeout=30)
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == param


# --- tool calling ----------------------------------------------------------------------------


def test_auto_tool_choice_parses_the_models_call(client, server):
    """tool_choice auto goes through the configured parser (pythonic); the output is pinned
    with a regex so the 135M model's call is certain, the parsing is the engine's own."""
    forced = {"structured_outputs": {"regex": r'\[get_weather\(city="Paris"\)\]'}}
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], temperature=0, max_tokens=30, extra_body=forced
    )
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.choices[0].finish_reason == "tool_calls"
    row = stored(server, reply.id)
    assert row["params"]["tools"] == [WEATHER]
    assert row["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"

    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        temperature=0,
        max_tokens=30,
        extra_body=forced,
        stream=True,
    )
    chunk_id = next(iter(stream)).id
    for _ in stream:
        pass
    streamed = stored(server, chunk_id)["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in streamed] == [
        ("get_weather", {"city": "Paris"})
    ]


async def test_tool_call_feedback_becomes_a_learner_item(client, server, engine_url):
    """A reference tool call on a served tool-call reply: accepted, turned into a learner item
    that offers the same tool, and scored by the learner's own greedy path (1 for the call the
    weights make, 0 for another)."""
    from engine.client import EngineClient
    from learner.feedback_items import build_round_items
    from learner.fitness import score_verifiable
    from store.db import Database
    from store.queries import feedback_since

    reply = client.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], tool_choice=NAMED, temperature=0, max_tokens=40
    )
    call = reply.choices[0].message.tool_calls[0]
    made = {"name": call.function.name, "arguments": json.loads(call.function.arguments)}
    other = {"name": "get_weather", "arguments": {"city": "a city the model did not name"}}
    for reference in (made, other):
        r = feedback(server, reply.id, reference=json.dumps(reference), verifier="json")
        assert r.status_code == 200, r.text
    stored(server, reply.id)

    db = Database.connect(f"sqlite:///{server.data_dir / 'perennial.db'}")
    try:
        async with db.sessions() as session:
            page = await feedback_since(session, settle_s=0.0, limit=10_000)
    finally:
        await db.close()
    rows = [r for r in page.items if r.feedback.completion_id == reply.id]
    items = build_round_items(rows, heldout_fraction=0.0)
    verifiable = [*items.train.verifiable, *items.heldout.verifiable]
    assert len(verifiable) == 2 and all(item.tools == (WEATHER,) for item in verifiable)

    class Served:  # what score_verifiable needs of an engine: a client and the served name
        served_name = MODEL

        def __init__(self, client):
            self.client = client

    engine = EngineClient(engine_url, timeout_s=120)
    try:
        scores, failed, _ = await score_verifiable(Served(engine), verifiable, max_tokens=40)
    finally:
        await engine.aclose()
    by_reference = {
        json.loads(item.reference)["arguments"]["city"]: s for item, s in zip(verifiable, scores, strict=True)
    }
    assert failed == 0
    assert by_reference == {made["arguments"]["city"]: 1.0, other["arguments"]["city"]: 0.0}
