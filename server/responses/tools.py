"""Function tools on ``/v1/responses``: the Responses API's shapes <-> the chat shapes the engine serves.

A Responses request offers ``tools`` of type ``function`` (name, description, parameters,
strict at the top level) and the model answers with ``function_call`` output items; the client
runs the function and continues with a ``function_call_output`` input item (after the calls, or
alone with ``previous_response_id``). The engine speaks chat, so:

* a tool ``{"type": "function", "name", ...}`` is the chat tool ``{"type": "function",
  "function": {"name", ...}}``; ``tool_choice`` ``{"type": "function", "name"}`` likewise;
* ``function_call`` input items are an assistant message's ``tool_calls`` (consecutive calls
  join one message, after that message's text if it came just before), and a
  ``function_call_output`` is a ``tool`` message;
* a reply's ``tool_calls`` are ``function_call`` output items (``fc_<response hex>_<n>``), after
  its text when there is any; streamed, each is announced, its arguments streamed and closed
  (:class:`CallItems`), as OpenAI does.

Hosted tools (web_search, file_search, computer_use, mcp, ...) are refused with a 400 naming
the field: this server runs no tools itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from evals.bounded import Refused, check_schema
from server.chat.protocol import ParamError

MAX_TOOLS = 128
MAX_DESCRIPTION_CHARS = 4096
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("none", "auto", "required")
OUTPUT_PARTS = ("input_text", "output_text", "text")


def chat_tools(tools: list[Any] | None) -> list[dict[str, Any]]:
    """The request's ``tools`` as chat tools; ParamError naming the field for anything else."""
    out = []
    for i, tool in enumerate(tools or ()):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise ParamError(where, f"{where}: a tool must be an object")
        kind = tool.get("type")
        if kind != "function":
            raise ParamError(
                f"{where}.type",
                f"{where}.type: tool type {kind!r} is not supported by this server's /v1/responses "
                "(only 'function' tools: the client runs them)",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ParamError(f"{where}.name", f"{where}.name: 1-64 letters, digits, '_' or '-'")
        function: dict[str, Any] = {"name": name}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
                raise ParamError(f"{where}.description", f"{where}.description: a string, at most 4096 chars")
            function["description"] = description
        parameters = tool.get("parameters")
        if parameters is not None:
            _check_parameters(parameters, f"{where}.parameters")
            function["parameters"] = parameters
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": function})
    return out


def _check_parameters(parameters: Any, where: str) -> None:
    # the engine compiles them into a grammar for required and named choices: bounded, valid
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ParamError(where, f"{where}: a JSON schema of an object")
    try:
        check_schema(parameters)
    except (Refused, RecursionError) as exc:
        raise ParamError(where, f"{where}: {str(exc) or 'schema nested too deep'}") from None


def chat_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> str | dict[str, Any] | None:
    """``tool_choice`` as chat's; a choice that needs tools needs them, and a named one its tool."""
    if choice is None:
        return None
    if isinstance(choice, str) and choice in CHOICES:
        if choice == "required" and not tools:
            raise ParamError("tool_choice", "tool_choice 'required' needs tools")
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or name not in {t["function"]["name"] for t in tools}:
            raise ParamError("tool_choice", f"tool_choice: no function tool named {name!r} in tools")
        return {"type": "function", "function": {"name": name}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise ParamError(
        "tool_choice",
        f"tool_choice {kind!r} is not supported by this server's /v1/responses "
        "(none, auto, required, or a function tool by name)",
    )


def responses_tools(tools: list[Any] | None) -> list[dict[str, Any]]:
    """Chat tools (as stored) back in the Responses shape, for the response object."""
    out = []
    for tool in tools or ():
        function = dict(tool.get("function") or {}) if isinstance(tool, dict) else {}
        if function.get("name"):
            out.append({"type": "function", "strict": function.pop("strict", None), **function})
    return out


def responses_tool_choice(choice: Any) -> str | dict[str, Any]:
    """A chat ``tool_choice`` (as stored) back in the Responses shape; unset is ``auto``."""
    if isinstance(choice, dict):
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return choice or "auto"


def add_tool_item(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> bool:
    """Append a ``function_call`` / ``function_call_output`` input item to ``messages`` as chat
    turns. Returns False for any other item type (the caller decides)."""
    kind = item.get("type")
    if kind == "function_call":
        name, arguments = item.get("name"), item.get("arguments")
        call_id = item.get("call_id")
        if not isinstance(name, str) or not name or not isinstance(arguments, str):
            raise ParamError(where, f"{where}: a function_call needs a name and arguments (a JSON string)")
        if not isinstance(call_id, str) or not call_id:
            raise ParamError(f"{where}.call_id", f"{where}.call_id: required")
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        return True
    if kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ParamError(f"{where}.call_id", f"{where}.call_id: required")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _output_text(item, where)})
        return True
    return False


def _output_text(item: dict[str, Any], where: str) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = []
        for i, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in OUTPUT_PARTS:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ParamError(
                    f"{where}.output.{i}", f"output part type {kind!r} is not supported (text parts only)"
                )
            if not isinstance(part.get("text", ""), str):
                raise ParamError(f"{where}.output.{i}.text", "a text part's text is a string")
            parts.append(part.get("text", ""))
        return "".join(parts)
    raise ParamError(f"{where}.output", f"{where}.output: a string or a list of text parts")


def call_item(response_id: str, n: int, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """One chat tool call as a ``function_call`` output item (the ``n``-th of the response)."""
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": f"fc_{response_id.removeprefix('resp_')}_{n}",
        "call_id": call.get("id") or f"call_{uuid.uuid4().hex}",
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def call_items(response_id: str, tool_calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [call_item(response_id, n, call) for n, call in enumerate(tool_calls or ())]


class CallItems:
    """Streamed tool-call deltas -> ``function_call`` items and their events.

    ``event`` is the relay's event writer (type, fields -> SSE bytes); ``next_index`` gives the
    next free ``output_index`` (the text message may take one first).
    """

    def __init__(self, response_id: str, event: Callable[..., bytes], next_index: Callable[[], int]):
        self.response_id = response_id
        self.event = event
        self.next_index = next_index
        self.items: dict[int, tuple[int, dict[str, Any]]] = {}  # call index -> (output_index, item)

    def add(self, deltas: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for delta in deltas:
            function = delta.get("function") or {}
            index = delta.get("index", 0)
            if index not in self.items:
                item = call_item(self.response_id, len(self.items), delta, "in_progress")
                item["arguments"] = ""
                self.items[index] = (self.next_index(), item)
                out.append(
                    self.event(
                        "response.output_item.added", output_index=self.items[index][0], item=dict(item)
                    )
                )
            position, item = self.items[index]
            if function.get("name") and not item["name"]:
                item["name"] = function["name"]
            if function.get("arguments"):
                item["arguments"] += function["arguments"]
                out.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=position,
                        delta=function["arguments"],
                    )
                )
        return out

    def finish(self) -> list[bytes]:
        out = []
        for position, item in self.items.values():
            item["status"] = "completed"
            out.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=position,
                    arguments=item["arguments"],
                )
            )
            out.append(self.event("response.output_item.done", output_index=position, item=dict(item)))
        return out

    def done(self) -> list[tuple[int, dict[str, Any]]]:
        """(output_index, item) of every call, in order."""
        return sorted(self.items.values(), key=lambda pair: pair[0])

    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls as a chat message's ``tool_calls`` (for the log and follow-ups)."""
        return [
            {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            for _, item in self.done()
        ]


# --- the OpenAPI document: what the validators above check -------------------------------------

_TEXT = {"type": "string"}
INPUT_ITEM_SCHEMAS = [
    {
        "type": "object",
        "required": ["type", "call_id", "name", "arguments"],
        "properties": {
            "type": {"const": "function_call"},
            "call_id": {"type": "string", "minLength": 1},
            "name": {"type": "string", "minLength": 1},
            "arguments": _TEXT,
        },
    },
    {
        "type": "object",
        "required": ["type", "call_id", "output"],
        "properties": {
            "type": {"const": "function_call_output"},
            "call_id": {"type": "string", "minLength": 1},
            "output": {
                "anyOf": [
                    _TEXT,
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {"type": {"enum": list(OUTPUT_PARTS)}, "text": _TEXT},
                        },
                    },
                ]
            },
        },
    },
]


def document(schema: dict[str, Any]) -> None:
    """``tools`` and ``tool_choice`` of the request's JSON Schema (``ResponseRequest``)."""
    props = schema["properties"]
    props["tools"] = {
        "anyOf": [
            {"type": "null"},
            {
                "type": "array",
                "maxItems": MAX_TOOLS,
                "items": {
                    "type": "object",
                    "required": ["type", "name"],
                    "description": "A function tool; hosted tools (web_search, file_search, ...) are refused.",
                    "properties": {
                        "type": {"const": "function"},
                        "name": {"type": "string", "pattern": NAME.pattern},
                        "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_CHARS},
                        "parameters": {
                            "anyOf": [
                                {"type": "null"},
                                {
                                    "type": "object",
                                    "description": "A JSON schema of an object (bounded as "
                                    "structured output schemas are).",
                                    "properties": {"type": {"const": "object"}},
                                },
                            ]
                        },
                        "strict": {"type": ["boolean", "null"]},
                    },
                },
            },
        ]
    }
    function = {
        "type": "object",
        "required": ["type", "name"],
        "description": "Call this function: it must be one of tools.",
        "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
    }
    props["tool_choice"] = {"anyOf": [{"type": "null"}, {"enum": list(CHOICES)}, function]}
    needs_tools = {
        "if": {
            "required": ["tool_choice"],
            "properties": {"tool_choice": {"anyOf": [{"const": "required"}, {"type": "object"}]}},
        },
        "then": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
    }
    schema.setdefault("allOf", []).append(needs_tools)
