"""Pure logic of the OpenAI surface: completion and response requests, the Responses -> chat
translation, tool calls as verifier text, the json verifier, feedback on tool calls and raw
prompts as learner items, and the engine flags of tool calling."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from engine.supervisor import EngineSpec, chat_args
from engine.templates import resolve_chat_template, shipped
from evals.verifiers import VerifierError, parse_verifier, score, tool_call_text
from learner.feedback_items import build_round_items
from learner.fitness import greedy_body, reply_text
from learner.items import parse_item
from server.chat.protocol import CompletionRequest, ParamError
from server.chat.service import _Reply
from server.responses.protocol import ResponseRequest

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.mark.parametrize(("prompt", "count"), [("x", 1), (["a", "b"], 2), ([1, 2, 3], 1), ([[1, 2], [3]], 2)])
def test_completion_prompt_shapes(prompt, count):
    assert CompletionRequest.model_validate({"model": "m", "prompt": prompt}).prompt_count == count


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": []},
        {"prompt": [[]]},
        {"prompt": [-1]},
        {"prompt": "x", "max_tokens": 0},
        {"prompt": "x", "logprobs": 21},
        {"prompt": "x", "prompt_embeds": "AAAA"},
        {"prompt": "x", "best_of": 2},
        {"prompt": "x", "suffix": "y"},
    ],
)
def test_completion_refuses(body):
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", **body})


def test_completion_echo_may_generate_nothing():
    request = CompletionRequest.model_validate({"model": "m", "prompt": "x", "max_tokens": 0, "echo": True})
    assert request.max_tokens == 0


def test_response_translates_to_the_chat_it_means():
    request = ResponseRequest.model_validate(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": "Be brief."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            ],
            "max_output_tokens": 7,
            "temperature": 0,
            "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
        }
    )
    assert request.input_messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    fields = request.chat_fields()
    assert fields["max_tokens"] == 7 and fields["temperature"] == 0
    assert fields["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "o", "schema": {"type": "object"}},
    }
    assert request.text_config()["format"]["schema"] == {"type": "object"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ],
)
def test_response_refuses_what_it_cannot_serve(body, param):
    with pytest.raises(ValidationError) as caught:
        ResponseRequest.model_validate({"model": "m", **body})
    assert caught.value.errors()[0]["ctx"]["error"].param == param


def test_response_refuses_non_text_input():
    request = ResponseRequest.model_validate(
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}
    )
    with pytest.raises(ParamError) as caught:
        request.input_messages()
    assert caught.value.param == "input.0.content.0"


def test_response_nulls_of_unmodelled_fields_are_accepted():
    ResponseRequest.model_validate(
        {"model": "m", "input": "x", "tools": [], "reasoning": None, "include": None}
    )


def test_streamed_tool_call_deltas_reassemble():
    reply = _Reply()
    reply.add(
        0,
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": '{"ci'}}]},
        None,
    )
    reply.add(0, {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}, None)
    reply.add(0, {}, "tool_calls")
    [choice] = reply.choices()
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [CALL]


def test_tool_call_text_and_json_verifier():
    text = tool_call_text([CALL])
    assert json.loads(text) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    reference = '{"arguments": {"city": "Paris"}, "name": "get_weather"}'  # key order is not meaning
    assert score(text, reference, "json") == 1.0
    assert score(text, '{"name": "get_weather", "arguments": {"city": "Rome"}}', "json") == 0.0
    assert score("no json here", reference, "json") == 0.0
    assert reply_text({"content": None, "tool_calls": [CALL]}) == text
    assert reply_text({"content": "hi"}) == "hi"
    with pytest.raises(VerifierError):
        parse_verifier("json", "not json")


def _feedback_row(kind="chat", params=None, choices=None, **fb):
    interaction = SimpleNamespace(
        kind=kind,
        messages=[] if kind == "completion" else [{"role": "user", "content": "Weather in Paris?"}],
        params=params or {},
        choices=choices or [],
    )
    base = {
        "reference": None,
        "verifier": None,
        "correction": None,
        "reward": None,
        "label": None,
        "choice_index": 0,
    }
    feedback = SimpleNamespace(id="fb-1", completion_id="chatcmpl-1", caller="key_a", **{**base, **fb})
    return SimpleNamespace(seq=1, feedback=feedback, interaction=interaction, response="")


def test_tool_call_reference_becomes_an_item_with_its_tools():
    row = _feedback_row(
        params={"tools": [WEATHER], "tool_choice": "auto"},
        choices=[{"index": 0, "message": {"role": "assistant", "tool_calls": [CALL]}}],
        reference='{"name": "get_weather", "arguments": {"city": "Paris"}}',
        verifier={"type": "json"},
        label="up",
    )
    items = build_round_items([row], heldout_fraction=0.0)
    [item] = items.train.verifiable
    assert item.tools == (WEATHER,) and item.tool_choice == "auto"
    assert greedy_body("m", item, 8)["tools"] == [WEATHER]
    [rated] = items.train.rated  # the thumbs-up on a call weighs the call (learner/tool_items.py)
    assert rated.tool_calls == (CALL,) and rated.tools == (WEATHER,) and not items.skipped


def test_raw_prompt_feedback_is_skipped_and_counted():
    items = build_round_items([_feedback_row(kind="completion", reference="Paris")], heldout_fraction=0.0)
    assert len(items.train) == 0 and items.skipped == {"raw_prompt": 1}


def test_jsonl_item_with_tools():
    item = parse_item(
        {
            "prompt": "Weather?",
            "tools": [WEATHER],
            "reference": '{"name": "get_weather"}',
            "verifier": "json",
        },
        1,
    )
    assert item.tools == (WEATHER,)


def test_tool_calling_engine_flags():
    assert chat_args(None, None) == []
    template = str(shipped()["chatml-tools"])
    assert chat_args("chatml-tools", "pythonic") == [
        "--chat-template",
        template,
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "pythonic",
    ]
    spec = EngineSpec(model_dir="m", served_name="s", log_file="l", tool_call_parser="hermes")
    assert spec.command(1)[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    with pytest.raises(ValueError, match="neither a file nor a shipped template"):
        resolve_chat_template("no-such-template")
