"""How the engines format chats: the settings the serving engine and the learner engine share.

Both engines must render a conversation the same way (a member is judged on the prompts the
serving engine will see), so the gateway's ``server.settings.Settings`` and the learner's
``learner.settings.LearnerSettings`` both inherit these fields from here, the engine layer that
turns them into vLLM flags (:func:`engine.chat_format.chat_format`: the settings, else the model
family's default). Tool calling per model family: ``docs/tools.md``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChatFormatSettings(BaseSettings):
    """The chat template and tool-call parser of the serving and learner engines."""

    model_config = SettingsConfigDict(
        env_prefix="PERENNIAL_", env_file=".env", extra="ignore", validate_default=True
    )

    chat_template: str | None = Field(
        None,
        description="Chat template of the serving and learner engines: a Jinja file, a template "
        "shipped in engine/templates by name (chatml-tools), or none (the model's own). Unset, with "
        "tool_call_parser unset too: the model family's default (chatml-tools for SmolLM2, the "
        "bundled model), else the model's own (engine/chat_format.py).",
    )
    tool_call_parser: str | None = Field(
        None,
        description="vLLM tool-call parser (hermes, pythonic, llama3_json, mistral, ...), or none. "
        "Set: tool calling with tool_choice auto is on, in serving and in the learner. Unset, with "
        "chat_template unset too: the model family's default (pythonic for SmolLM2), else none "
        "(docs/tools.md).",
    )
