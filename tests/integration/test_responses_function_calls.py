"""Function calling on the Responses API through the official ``openai`` client, on the gateway's
defaults (the bundled model: ``chatml-tools`` + ``pythonic``, reported by /v1/models): create,
stream (the function-call events), continue with ``function_call_output`` with and without
``previous_response_id``, retrieve; every turn stored and rateable.

``tool_choice`` names or requires the tool, so the 135M model's call is certain (the engine
constrains decoding); the tests check the protocol, not the model's judgement.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
USER = {"authorization": f"Bearer {API_KEYS[0]}"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = "What is the weather in Paris? Use the tool."
NAMED = {"type": "function", "name": "get_weather"}


def _stored(server, interaction_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = httpx.get(server.url + "/admin/interactions", params={"limit": 50}, headers=ADMIN).json()
        for row in page["data"]:
            if row["id"] == interaction_id:
                return row
        time.sleep(0.2)
    raise AssertionError(f"{interaction_id} was not stored within {timeout} s")


def _call(response):
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) >= 1, response.output
    return calls[0]


def test_models_report_tool_calling_on_by_default(client):
    card = client.models.list().data[0]
    tools = card.model_extra["tool_calling"]
    assert tools["auto_tool_choice"] is True and tools["tool_call_parser"] == "pythonic"
    assert tools["source"] == "default" and tools["family"] == "smollm2"


def test_function_call_then_output_without_previous_response_id(client, server):
    first = client.responses.create(
        model=MODEL, input=ASK, tools=[WEATHER], tool_choice=NAMED, temperature=0, max_output_tokens=40
    )
    call = _call(first)
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
    assert call.id.startswith("fc_") and call.call_id and call.status == "completed"
    assert first.tools[0].name == "get_weather" and first.tool_choice.name == "get_weather"

    # the client replays the whole conversation, as stateless agents do
    follow = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": ASK},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees."},
        ],
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=24,
    )
    assert follow.status in ("completed", "incomplete") and follow.output
    row = _stored(server, follow.id)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool"]
    assert row["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert row["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "content": "Sunny, 21 degrees.",
    }
    stored_first = _stored(server, first.id)
    assert stored_first["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert stored_first["params"]["tools"][0]["function"]["name"] == "get_weather"
    for rid in (first.id, follow.id):
        r = httpx.post(server.url + "/v1/feedback", json={"completion_id": rid, "label": "up"}, headers=USER)
        assert r.status_code == 200, r.text


def test_function_call_output_with_previous_response_id(client, server):
    first = client.responses.create(
        model=MODEL, input=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_output_tokens=96
    )
    call = _call(first)
    follow = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees."}],
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=24,
    )
    assert follow.previous_response_id == first.id and follow.output
    messages = _stored(server, follow.id)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id

    again = client.responses.retrieve(first.id)  # stored with its call, read back as created
    assert _call(again).call_id == call.call_id and again.tools[0].name == "get_weather"
    _stored(server, first.id)
    # from the database too: the gateway's memory holds recent ones only
    reread = httpx.get(f"{server.base_url}/responses/{first.id}", headers=USER, timeout=30).json()
    assert reread["output"][-1]["type"] == "function_call"


def test_function_call_stream_events(client):
    events = list(
        client.responses.create(
            model=MODEL,
            input=ASK,
            tools=[WEATHER],
            tool_choice=NAMED,
            temperature=0,
            max_output_tokens=40,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    added = next(
        e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"
    )
    assert added.item.arguments == "" and added.item.status == "in_progress"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas and "".join(deltas) == done.arguments and done.item_id == added.item.id
    item_done = next(
        e for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"
    )
    assert item_done.item.arguments == done.arguments and item_done.item.status == "completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert _call(final).arguments == done.arguments and _call(final).name == "get_weather"


def test_hosted_tools_are_refused_naming_the_field(client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="Search the web.", tools=[{"type": "web_search"}])
    assert caught.value.body["param"] == "tools.0.type" and "web_search" in caught.value.body["message"]


async def test_rated_agent_turns_become_learner_items_scored_as_served(client, server, engine_url):
    """A thumbs-up on a Responses tool call and on the answer after its result: two rated items
    that replay the conversation with its tools, whose likelihood the learner computes on the
    served engine (the calls rendered by the chat template, the tools in the prompt)."""
    from engine.client import EngineClient
    from evals.scoring import reply_logprobs, reply_tokens
    from learner.feedback_items import build_round_items
    from store.db import Database
    from store.queries import feedback_since

    first = client.responses.create(
        model=MODEL, input=ASK, tools=[WEATHER], tool_choice=NAMED, temperature=0, max_output_tokens=40
    )
    call = _call(first)
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees."}
    follow = client.responses.create(
        model=MODEL, previous_response_id=first.id, input=[output], tools=[WEATHER], max_output_tokens=16
    )
    for rid in (first.id, follow.id):
        _stored(server, rid)
        r = httpx.post(server.url + "/v1/feedback", json={"completion_id": rid, "label": "up"}, headers=USER)
        assert r.status_code == 200, r.text

    db = Database.connect(f"sqlite:///{server.data_dir / 'perennial.db'}")
    try:
        deadline = time.monotonic() + 30
        rows = []
        while len(rows) < 2 and time.monotonic() < deadline:  # feedback is written off the request path
            async with db.sessions() as session:
                page = await feedback_since(session, settle_s=0.0, limit=10_000)
            rows = [r for r in page.items if r.feedback.completion_id in (first.id, follow.id)]
            await asyncio.sleep(0.3)
    finally:
        await db.close()
    items = build_round_items(rows, heldout_fraction=0.0)
    rated = {item.id.split(":")[0]: item for item in [*items.train.rated, *items.heldout.rated]}
    assert len(rated) == 2, items.summary()
    by_turn = {len(item.messages): item for item in rated.values()}
    call_item, answer_item = by_turn[1], by_turn[3]  # the call's turn; the answer after the result
    assert call_item.tool_calls and call_item.tool_calls[0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in answer_item.messages] == ["user", "assistant", "tool"]
    assert all(item.tools[0]["function"]["name"] == "get_weather" for item in rated.values())

    engine = EngineClient(engine_url, timeout_s=120)
    try:
        for item in (call_item, answer_item):
            tokens = await reply_tokens(
                engine, MODEL, item.messages, item.completion, tools=item.tools, tool_calls=item.tool_calls
            )
            logprobs = await reply_logprobs(engine, MODEL, tokens)
            assert logprobs and all(lp <= 0 for lp in logprobs)
        body = {"model": MODEL, "messages": list(answer_item.messages), "add_generation_prompt": True}
        bare = await engine.tokenize(body)  # the same prompt without the tools: shorter
    finally:
        await engine.aclose()
    assert tokens.start > len(bare["tokens"])  # the tools are in the prompt, as served
