"""Chat templates shipped with Perennial, selectable by name in ``PERENNIAL_CHAT_TEMPLATE``.

``chatml-tools``: ChatML with function calling in the pythonic format (pair it with
``PERENNIAL_TOOL_CALL_PARSER=pythonic``); for the bundled SmolLM2, whose own template renders
neither tools nor tool calls.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def shipped() -> dict[str, Path]:
    """Name -> file of every template in this folder (``chatml_tools.jinja`` is ``chatml-tools``)."""
    return {p.stem.replace("_", "-"): p for p in sorted(HERE.glob("*.jinja"))}


def resolve_chat_template(value: str | Path) -> Path:
    """A shipped template's name or a Jinja file's path -> the file; ValueError if neither."""
    named = shipped().get(str(value))
    if named is not None:
        return named
    path = Path(value).expanduser()
    if not path.is_file():
        names = ", ".join(shipped())
        raise ValueError(f"chat template {str(value)!r} is neither a file nor a shipped template ({names})")
    return path.resolve()
