"""Function tools on /v1/responses, without an engine: Responses tools and items <-> chat
(``server/responses/tools.py``), the request's chat fields, and the streamed call events."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from server.chat.protocol import ParamError
from server.responses.protocol import ResponseRequest
from server.responses.service import StoredResponse, reply_message
from server.responses.tools import CallItems, call_items, responses_tool_choice, responses_tools

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CHAT_TOOL = {
    "type": "function",
    "function": {k: v for k, v in TOOL.items() if k != "type"},
}


def _request(**body) -> ResponseRequest:
    return ResponseRequest.model_validate({"model": "m", "input": "Weather in Paris?", **body})


def test_function_tools_become_chat_tools():
    fields = _request(tools=[TOOL], tool_choice="required", parallel_tool_calls=False).chat_fields()
    assert fields["tools"] == [CHAT_TOOL]
    assert fields["tool_choice"] == "required" and fields["parallel_tool_calls"] is False
    named = _request(tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}).chat_fields()
    assert named["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert _request(tool_choice="auto").chat_fields() == {}  # no tools: nothing about them


def test_stored_chat_tools_read_back_as_responses_tools():
    assert responses_tools([CHAT_TOOL]) == [TOOL]
    assert responses_tool_choice({"type": "function", "function": {"name": "f"}}) == {
        "type": "function",
        "name": "f",
    }
    assert responses_tool_choice(None) == "auto"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools.0.type"),
        ({"tools": [{"type": "computer_use_preview"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools.0.name"),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": {"type": "string"}}]},
            "tools.0.parameters",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "required": 5}}]},
            "tools.0.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"tools": [], "tool_choice": {"type": "function", "name": {}}}, "tool_choice"),
    ],
)
def test_refused_with_the_field_named(body, param):
    with pytest.raises(ValidationError) as caught:
        _request(**body)
    error = caught.value.errors()[0]["ctx"]["error"]
    assert error.param == param
    if param == "tools.0.type":
        assert "not supported" in str(error) and body["tools"][0]["type"] in str(error)


def test_function_call_items_become_chat_turns():
    request = _request(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "id": "fc_1",
                "status": "completed",
            },
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "Rain"}],
            },
        ]
    )
    messages = request.input_messages()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == "Checking."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "Rain"},
    ]
    alone = _request(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}])
    assert alone.input_messages()[0]["content"] is None


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input.0.call_id"),
        (
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image"}]},
            "input.0.output.0",
        ),
        ({"type": "item_reference", "id": "x"}, "input.0.type"),
    ],
)
def test_bad_tool_items_are_refused(item, param):
    with pytest.raises(ParamError) as caught:
        _request(input=[item]).input_messages()
    assert caught.value.param == param


def test_a_stored_tool_call_reply_continues_with_its_calls():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    stored = StoredResponse("key", [{"role": "user", "content": "Hi"}], False, "", {}, [call])
    assert stored.conversation()[-1] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert reply_message("Hello", None) == {"role": "assistant", "content": "Hello"}
    items = call_items("resp_ab", [call])
    assert items == [
        {
            "type": "function_call",
            "id": "fc_ab_0",
            "call_id": "c1",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
    ]


def test_streamed_calls_are_announced_streamed_and_closed():
    events = []

    def event(kind, **fields):
        events.append({"type": kind, **fields})
        return b""

    index = iter(range(5))
    calls = CallItems("resp_ab", event, lambda: next(index))
    calls.add([{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}])
    calls.add([{"index": 0, "function": {"arguments": ": 1}"}}])
    calls.finish()
    assert [e["type"] for e in events] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert events[0]["item"]["status"] == "in_progress" and events[0]["item"]["arguments"] == ""
    assert events[3]["arguments"] == '{"a": 1}' and events[3]["item_id"] == "fc_ab_0"
    assert events[4]["item"]["status"] == "completed" and events[4]["item"]["call_id"] == "c1"
    assert json.loads(calls.tool_calls()[0]["function"]["arguments"]) == {"a": 1}
