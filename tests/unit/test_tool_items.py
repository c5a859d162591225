"""Feedback on agent runs as learner items (``learner/tool_items.py`` through
``learner.feedback_items.items_of``): multi-step conversations with tool calls and results, a
reference or correction given as an assistant message with ``tool_calls``, a rating of a
tool-call reply; and the likelihood path renders tools and calls as served (``evals.scoring``)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from evals.scoring import reply_tokens
from learner.feedback_items import heldout_pool, items_of
from learner.items import RatedItem, VerifiableItem
from learner.tool_items import call_budget, call_reference, conversation, message_calls, reference_calls

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
AGENT_RUN = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
]


def _feedback(**fields):
    base = dict(id="fb-1", completion_id="resp_1", reference=None, verifier=None, correction=None)
    return SimpleNamespace(**{**base, "reward": None, "label": None, "choice_index": 0, **fields})


def _interaction(messages, reply, tools=(WEATHER,)):
    return SimpleNamespace(
        kind="response",
        messages=messages,
        params={"tools": list(tools)},
        choices=[{"index": 0, "message": reply, "finish_reason": "stop"}],
    )


def test_a_rated_final_answer_replays_the_agent_run():
    interaction = _interaction(AGENT_RUN, {"role": "assistant", "content": "It is sunny."})
    skipped: dict[str, int] = {}
    (item,) = items_of(_feedback(label="up"), interaction, "It is sunny.", skipped)
    assert isinstance(item, RatedItem) and item.completion == "It is sunny." and item.reward == 1.0
    assert [m["role"] for m in item.messages] == ["system", "user", "assistant", "tool"]
    assert item.messages[2]["tool_calls"] == [CALL] and item.messages[3]["tool_call_id"] == "c1"
    assert item.tools == (WEATHER,) and not skipped


def test_a_rated_tool_call_reply_weighs_its_calls():
    interaction = _interaction(AGENT_RUN[:2], {"role": "assistant", "content": "", "tool_calls": [CALL]})
    (item,) = items_of(_feedback(reward=-0.5), interaction, "", {})
    assert item.tool_calls == (CALL,) and item.reward == -0.5
    assert json.loads(item.completion) == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_a_reference_tool_call_as_an_assistant_message():
    message = json.dumps({"role": "assistant", "tool_calls": [CALL]})
    interaction = _interaction(AGENT_RUN[:2], {"role": "assistant", "content": "Hello"})
    (item,) = items_of(_feedback(reference=message), interaction, "Hello", {})
    assert isinstance(item, VerifiableItem) and item.verifier.type == "json" and item.tools == (WEATHER,)
    assert json.loads(item.reference) == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_a_reference_call_item_may_write_the_whole_call():
    # the run's budget (16 tokens) cuts a call of three arguments short: the item carries its own
    args = {"amount": 1000, "from_currency": "USD", "to_currency": "EUR"}
    reference = json.dumps({"name": "convert_currency", "arguments": args})
    interaction = _interaction(AGENT_RUN[:2], {"role": "assistant", "content": "Hello"})
    (item,) = items_of(_feedback(reference=reference, verifier="json"), interaction, "Hello", {})
    assert item.max_tokens == call_budget(item.reference) >= 25 + 1  # 25 tokens of SmolLM2, end of turn
    (text,) = items_of(_feedback(reference="Paris"), interaction, "Hello", {})
    assert text.max_tokens is None  # a text reference keeps the run's budget


def test_the_heldout_pool_scores_reference_calls_by_their_likelihood():
    # A round whose feedback is reference calls only had an empty pool, so the gate could never
    # promote it ("fewer than min_target_items"); a reference call is scored as its calls.
    reference = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
    interaction = _interaction(AGENT_RUN[:2], {"role": "assistant", "content": "Hello"})
    fb = _feedback(reference=reference, verifier="json", seq=1, caller="c", task="tools")
    row = SimpleNamespace(seq=1, feedback=fb, interaction=interaction, response="Hello")
    pool, summary = heldout_pool([row], max_per_task=8)
    (item,) = pool.rated
    assert not pool.verifiable and summary["items"] == 1 and not summary["left_out"]
    assert item.id == "fb-1:ref" and item.reward == 1.0 and item.tools == (WEATHER,)
    assert [c["function"] for c in item.tool_calls] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    text = SimpleNamespace(**{**vars(fb), "reference": "Paris", "verifier": None})
    pool, _ = heldout_pool([SimpleNamespace(**{**vars(row), "feedback": text})], max_per_task=8)
    assert not pool.rated and not pool.verifiable  # a text reference in a tool chat: still unscorable


def test_reference_calls():
    one = reference_calls('{"name": "f", "arguments": {"x": 1}}')
    assert one == [{"id": "call_0", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    two = reference_calls('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"y": "z"}}]')
    assert [c["function"]["name"] for c in two] == ["f", "g"]
    for not_a_call in ("Paris", "[]", '{"name": "f"}', '{"name": 1, "arguments": {}}', '{"a": 1}'):
        assert reference_calls(not_a_call) is None


def test_a_correction_that_is_a_tool_call():
    message = json.dumps({"role": "assistant", "content": None, "tool_calls": [CALL]})
    interaction = _interaction(AGENT_RUN[:2], {"role": "assistant", "content": "I do not know."})
    (item,) = items_of(_feedback(correction=message), interaction, "I do not know.", {})
    assert item.tool_calls == (CALL,) and item.reward == 1.0


def test_what_is_not_a_tool_conversation():
    assert conversation([{"role": "user", "content": [{"type": "image_url"}]}]) is None
    assert conversation([*AGENT_RUN, {"role": "assistant", "content": "x"}]) is None  # ends with the reply
    assert message_calls("Paris") is None and message_calls('{"name": "f"}') is None
    assert call_reference("Paris", None) == ("Paris", None)
    assert call_reference('{"tool_calls": []}', "json") == ('{"tool_calls": []}', "json")


class _Tokenizer:
    """An engine client whose /tokenize renders with a toy template, to see what is asked."""

    def __init__(self):
        self.bodies = []

    async def tokenize(self, body):
        self.bodies.append(body)
        text = json.dumps(body["messages"]) + ("<gen>" if body["add_generation_prompt"] else "")
        return {"tokens": [ord(c) for c in text.removesuffix("]<gen>")]}


def test_likelihood_tokens_render_tools_and_calls():
    client = _Tokenizer()
    asyncio.run(reply_tokens(client, "m", AGENT_RUN[:2], "unused", tools=(WEATHER,), tool_calls=(CALL,)))
    prompt, full = client.bodies
    assert prompt["tools"] == full["tools"] == [WEATHER]
    assert full["messages"][-1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
