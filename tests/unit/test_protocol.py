"""Validation of the chat request model and the error envelope (pure logic, no engine)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.chat.protocol import ChatCompletionRequest
from server.errors import validation_error

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def param_of(body: dict) -> str | None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    error = validation_error(info.value)
    assert error.status == 400 and error.type == "invalid_request_error"
    return error.param


def test_minimal_request_is_valid_and_keeps_engine_extras():
    request = ChatCompletionRequest.model_validate({**BASE, "top_k": 5, "min_p": 0.1})
    dumped = request.model_dump(exclude_unset=True)
    assert dumped["top_k"] == 5 and dumped["min_p"] == 0.1
    assert "temperature" not in dumped  # unset fields are not sent: engine defaults apply


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages.0"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"stop": ["x" * 300]}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"12": 101}}, "logit_bias"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"kv_transfer_params": {}}, "kv_transfer_params"),
        ({"request_id": "abc"}, "request_id"),
        ({"user": "u" * 300}, "user"),
    ],
)
def test_bad_values_name_their_parameter(patch, param):
    assert param_of({**BASE, **patch}) == param


def test_assistant_message_may_omit_content():
    body = {**BASE, "messages": [{"role": "assistant", "tool_calls": []}, {"role": "user", "content": "x"}]}
    assert ChatCompletionRequest.model_validate(body).messages[0].content is None


def test_requested_tokens_prefers_max_completion_tokens():
    request = ChatCompletionRequest.model_validate({**BASE, "max_tokens": 9, "max_completion_tokens": 4})
    assert request.requested_tokens == 4
