"""LangChain's ``ChatOpenAI`` against the gateway: invoke, stream, batch, and structured output
in every method LangChain offers (json_schema, json_mode, function_calling).

Structured output from a 135M model is only certain where the engine constrains decoding, which
is exactly what these methods ask of it (a JSON schema, JSON mode, a named tool); the tests check
that LangChain gets back what it asked for, parsed by LangChain itself.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from tests.conftest import API_KEYS

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"


class City(BaseModel):
    """A city and its country."""

    name: str = Field(description="the city's name")
    country: str = Field(description="the country it is in")


CITY_SCHEMA = {
    "title": "city",
    "description": "A city and its country.",
    "type": "object",
    "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
    "required": ["name", "country"],
}


@pytest.fixture(scope="module")
def llm(server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=MODEL,
        base_url=server.base_url,
        api_key=API_KEYS[0],
        temperature=0,
        max_tokens=48,
        max_retries=0,
        timeout=120,
    )


def test_invoke_returns_the_gateways_reply(llm):
    reply = llm.invoke("What is the capital of France?")
    assert "Paris" in reply.content
    assert reply.response_metadata["system_fingerprint"] == "perennial:base"
    assert reply.id.startswith("chatcmpl-") or reply.response_metadata["id"].startswith("chatcmpl-")
    assert reply.usage_metadata["input_tokens"] > 0 and reply.usage_metadata["output_tokens"] > 0


def test_stream_reassembles_to_invoke(llm):
    question = "Name three colors."
    whole = llm.invoke(question).content
    chunks = list(llm.stream(question))
    assert len(chunks) > 1
    assert "".join(c.content for c in chunks) == whole


def test_batch_answers_each(llm):
    replies = llm.batch(["What is the capital of France?", "What is 2 + 2?"])
    assert len(replies) == 2 and "Paris" in replies[0].content and "4" in replies[1].content


def test_structured_output_json_schema(llm):
    city = llm.with_structured_output(City, method="json_schema").invoke("Paris is a city in France.")
    assert isinstance(city, City) and city.name and city.country


def test_structured_output_json_mode(llm):
    prompt = 'Reply with a JSON object with keys "name" and "country" for Paris, France.'
    value = llm.with_structured_output(CITY_SCHEMA, method="json_mode").invoke(prompt)
    assert isinstance(value, dict)


def test_structured_output_function_calling(llm):
    city = llm.with_structured_output(City, method="function_calling").invoke("Paris is a city in France.")
    assert isinstance(city, City) and city.name and city.country


def test_bound_tools_come_back_as_tool_calls(llm):
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "sunny"

    reply = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    assert set(reply.tool_calls[0]["args"]) == {"city"}
