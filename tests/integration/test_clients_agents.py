"""The OpenAI Agents SDK (``openai-agents``) against the gateway on its defaults, through both of
its model classes: ``OpenAIChatCompletionsModel`` (chat completions) and ``OpenAIResponsesModel``
(the Responses API), with ``Runner.run`` and ``Runner.run_streamed``, without tools and with a
function tool.

The 135M model does not call a tool reliably by itself, so the agent's first turn asks for a call
(``tool_choice="required"``: the engine constrains decoding to the tool's schema); the SDK resets
the choice after the call, so the second turn answers freely. The tests check the protocol, not
the model's intelligence: a call arrived, the tool ran with the model's arguments, its result went
back, a final output exists, and every turn was stored as an interaction that takes feedback.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import ADMIN_KEY, API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
USER = {"authorization": f"Bearer {API_KEYS[0]}"}
KINDS = ("chat", "responses")
ID_HEADER = "x-perennial-completion-id"


@pytest.fixture(scope="module")
def agents(server):
    """The SDK, pointed at the gateway, tracing off (it would call OpenAI's servers)."""
    sdk = pytest.importorskip("agents")
    sdk.set_tracing_disabled(True)
    return sdk


def _agent(agents, server, kind: str, turns: list[str], *, tools=(), tool_choice=None):
    """An agent on the gateway; the gateway's id of each model turn it takes lands in ``turns``
    (from the ``x-perennial-completion-id`` header: the chat model class keeps no response id)."""
    from openai import AsyncOpenAI

    async def record(response: httpx.Response) -> None:
        if response.request.method == "POST" and ID_HEADER in response.headers:
            turns.append(response.headers[ID_HEADER])

    http = httpx.AsyncClient(timeout=120, event_hooks={"response": [record]})
    client = AsyncOpenAI(base_url=server.base_url, api_key=API_KEYS[0], max_retries=0, http_client=http)
    model_class = agents.OpenAIChatCompletionsModel if kind == "chat" else agents.OpenAIResponsesModel
    settings = agents.ModelSettings(temperature=0, max_tokens=64, tool_choice=tool_choice)
    return agents.Agent(
        name="assistant",
        instructions="You are a helpful assistant. Answer briefly.",
        model=model_class(model=MODEL, openai_client=client),
        tools=list(tools),
        model_settings=settings,
    )


def _weather_tool(agents, calls: list[dict]):
    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append({"city": city})
        return f"It is sunny and 21 degrees in {city}."

    return get_weather


def _stored(server, ids: list[str], timeout: float = 30.0) -> dict[str, dict]:
    """The interactions with these ids, once the ingest path has written them all."""
    import time

    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline and len(found) < len(ids):
        page = httpx.get(server.url + "/admin/interactions", params={"limit": 100}, headers=ADMIN).json()
        found = {row["id"]: row for row in page["data"] if row["id"] in ids}
        time.sleep(0.3)
    assert set(found) == set(ids), f"not stored: {set(ids) - set(found)}"
    return found


def _check_tool_run(server, result, calls: list[dict], kind: str, ids: list[str]) -> None:
    from agents.items import ToolCallItem, ToolCallOutputItem

    assert calls and all(isinstance(c["city"], str) for c in calls)  # the tool ran on the model's call
    assert any(isinstance(item, ToolCallItem) for item in result.new_items)
    outputs = [item for item in result.new_items if isinstance(item, ToolCallOutputItem)]
    assert outputs and "sunny" in str(outputs[0].output)
    assert isinstance(result.final_output, str)  # the run went on after the tool to an answer
    assert len(ids) == len(result.raw_responses) >= 2 and all(
        i.startswith("chatcmpl-" if kind == "chat" else "resp_") for i in ids
    )
    rows = _stored(server, ids)
    first, second = rows[ids[0]], rows[ids[1]]
    assert first["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert first["params"]["tools"][0]["function"]["name"] == "get_weather"
    # the second turn replays the call and its result
    roles = [m["role"] for m in second["messages"]]
    assert "tool" in roles and any(m.get("tool_calls") for m in second["messages"])
    for turn in ids:
        r = httpx.post(
            server.url + "/v1/feedback", json={"completion_id": turn, "label": "up"}, headers=USER, timeout=30
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("kind", KINDS)
def test_run_without_tools(agents, server, kind):
    turns: list[str] = []
    result = asyncio.run(
        agents.Runner.run(_agent(agents, server, kind, turns), "What is the capital of France?")
    )
    assert "Paris" in result.final_output
    assert len(turns) == 1
    _stored(server, turns)


@pytest.mark.parametrize("kind", KINDS)
def test_run_streamed_without_tools(agents, server, kind):
    async def run():
        streamed = agents.Runner.run_streamed(
            _agent(agents, server, kind, turns), "What is the capital of France?"
        )
        deltas = []
        async for event in streamed.stream_events():
            if event.type == "raw_response_event" and getattr(event.data, "type", "") in (
                "response.output_text.delta",
            ):
                deltas.append(event.data.delta)
        return streamed, deltas

    turns: list[str] = []
    streamed, deltas = asyncio.run(run())
    assert deltas and "".join(deltas) == streamed.final_output
    assert "Paris" in streamed.final_output
    _stored(server, turns)


@pytest.mark.parametrize("kind", KINDS)
def test_run_with_a_function_tool(agents, server, kind):
    calls: list[dict] = []
    turns: list[str] = []
    agent = _agent(agents, server, kind, turns, tools=[_weather_tool(agents, calls)], tool_choice="required")
    result = asyncio.run(agents.Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    _check_tool_run(server, result, calls, kind, turns)


@pytest.mark.parametrize("kind", KINDS)
def test_run_streamed_with_a_function_tool(agents, server, kind):
    calls: list[dict] = []
    turns: list[str] = []
    agent = _agent(agents, server, kind, turns, tools=[_weather_tool(agents, calls)], tool_choice="required")

    async def run():
        streamed = agents.Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=4)
        kinds = []
        async for event in streamed.stream_events():
            if event.type == "run_item_stream_event":
                kinds.append(event.name)
        return streamed, kinds

    streamed, kinds = asyncio.run(run())
    assert "tool_called" in kinds and "tool_output" in kinds
    _check_tool_run(server, streamed, calls, kind, turns)
