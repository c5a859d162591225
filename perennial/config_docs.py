"""Write docs/configuration.md and .env.example from the settings classes, in one field walk.

    .venv/bin/python -m perennial.config_docs           # rewrite both files
    .venv/bin/python -m perennial.config_docs --check   # exit 1 if either is out of date

Every setting is declared once, as a pydantic field with its description and bounds, in the
settings class of a process (``PROCESSES``) or one of its bases. This module walks those classes'
``model_fields`` generically (no field name is spelled here), so a new or generated field shows
up in both files with the next run; ``tests/unit/test_config_docs.py`` fails while either file
is out of date.
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from learner.settings import LearnerSettings
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
COMMAND = ".venv/bin/python -m perennial.config_docs"

# The settings class of each process, and who reads it. Their shared bases
# (store.settings.StateSettings, ...) are found in their MROs, so a new base class or a generated
# field needs no change here.
PROCESSES: dict[type[BaseSettings], str] = {
    Settings: "the gateway (`perennial serve`)",
    LearnerSettings: "the learner (inside `perennial serve`, or `perennial learner`)",
}


@dataclass(frozen=True)
class Source:
    """One settings class: a section of both files."""

    cls: type[BaseSettings]
    readers: tuple[type[BaseSettings], ...]  # the process classes that inherit or are it

    @property
    def path(self) -> str:
        return self.cls.__module__.replace(".", "/") + ".py"

    @property
    def summary(self) -> str:
        return " ".join((self.cls.__doc__ or "").strip().split("\n\n")[0].split())


def sources(processes: tuple[type[BaseSettings], ...] = tuple(PROCESSES)) -> list[Source]:
    """The public settings classes behind the processes': shared bases first, then each process's.

    A private base (``_RoundKnobs``: fields generated from a config model) is no section of its
    own; its fields are listed under the public class that uses it.
    """
    order: list[type[BaseSettings]] = []
    for proc in processes:
        order += [c for c in proc.__mro__[1:] if _is_section(c) and c not in order]
    order += [p for p in processes if p not in order]
    return [Source(c, tuple(p for p in processes if issubclass(p, c))) for c in order]


def _is_section(cls: type) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, BaseSettings)
        and cls is not BaseSettings
        and not cls.__name__.startswith("_")
        and not cls.__module__.startswith("pydantic")
    )


@dataclass(frozen=True)
class Entry:
    """One environment variable as both files show it."""

    env: str
    type: str
    default: str  # as written in .env.example ("" for unset)
    default_doc: str  # as shown in the docs table
    bounds: str
    description: str
    also_read_by: tuple[str, ...]


def env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The variable pydantic-settings reads: an alias as is, else ``env_prefix`` + the field name."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    if alias:
        return alias.upper()
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def type_text(annotation: Any) -> str:
    """A field's type in words: ``int``, ``float, optional``, ``one of: l1, l2``, ``list of str``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_text(get_args(annotation)[0])
    if origin is Literal:
        return "one of: " + ", ".join(str(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        text = " or ".join(type_text(a) for a in args)
        return f"{text}, optional" if len(args) < len(get_args(annotation)) else text
    if origin is list:
        (item,) = get_args(annotation) or (str,)
        return f"list of {type_text(item)} (comma-separated)"
    if annotation is SecretStr:
        return "secret str"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def bounds_text(field: FieldInfo) -> str:
    """``ge``/``gt``/``le``/``lt`` and length bounds from the field's metadata, e.g. ``>= 0, <= 19``."""
    parts = []
    for item in field.metadata:
        for kind, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, kind, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                parts.append(f"{symbol} {value}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
    return ", ".join(parts)


def default_value(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def env_text(value: Any) -> str:
    """A default as an environment value (``""``: unset)."""
    if value is None or value is PydanticUndefined or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ",".join(env_text(v) for v in value)
    return str(value)


def doc_default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    text = env_text(value)
    return f"`{text}`" if text else "empty"


def _env_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    return {env_name(cls, name, field): field for name, field in cls.model_fields.items()}


def entries(groups_of: list[Source] | None = None) -> list[tuple[Source, list[Entry]]]:
    """Every setting, under the first section class that has it, in declaration order."""
    groups_of = sources() if groups_of is None else groups_of
    processes = {p: _env_fields(p) for s in groups_of for p in s.readers}
    seen: set[str] = set()
    groups = []
    for source in groups_of:
        group = []
        for env, field in _env_fields(source.cls).items():
            if env in seen:
                continue
            seen.add(env)
            readers = [p for p, fields in processes.items() if env in fields]
            defaults = {p.__name__: doc_default(default_value(processes[p][env])) for p in readers}
            group.append(
                Entry(
                    env=env,
                    type=type_text(field.annotation),
                    default=env_text(default_value(field)),
                    default_doc="; ".join(f"{n}: {d}" for n, d in defaults.items())
                    if len(set(defaults.values())) > 1
                    else doc_default(default_value(field)),
                    bounds=bounds_text(field),
                    description=" ".join((field.description or "").split()),
                    also_read_by=tuple(_reader(p) for p in readers if p not in source.readers),
                )
            )
        groups.append((source, group))
    return groups


def _reader(process: type[BaseSettings]) -> str:
    return PROCESSES.get(process, process.__name__)


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, ``<placeholder>`` as code (else it renders as a tag)."""
    return re.sub(r"<([A-Za-z_][^<>\s]*)>", r"`<\1>`", text.replace("|", "\\|"))


def render_markdown(groups: list[tuple[Source, list[Entry]]]) -> str:
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated by `{COMMAND}` from the settings classes. Do not edit by hand. -->",
        "",
        "Every setting is an environment variable, or a line in a `.env` file in the working",
        "directory; the flags of `perennial serve` (`--host`, `--port`, `--data-dir`, `--model-dir`,",
        "`--engine-url`) and `perennial learner` (`--data-dir`, `--gateway-url`, `--ray`,",
        "`--ray-actors`) override both. Each process validates its settings once at start and refuses",
        "a value out of range. [`.env.example`](../.env.example) lists the same variables with their",
        "defaults. Lists are comma-separated; secrets never appear in logs or in `repr`.",
        "",
        f"This page and `.env.example` are written by `{COMMAND}` from the",
        "fields of the classes below (types, defaults, bounds and descriptions, each declared once);",
        "`tests/unit/test_config_docs.py` fails while either is out of date.",
        "",
    ]
    for source, group in groups:
        if not group:
            continue
        lines += [
            f"## `{source.cls.__name__}` ({source.path})",
            "",
            f"{source.summary} Read by {' and '.join(_reader(p) for p in source.readers)}.",
            "",
            "| variable | type | default | range | description |",
            "|---|---|---|---|---|",
        ]
        for e in group:
            also = f" Also read by {' and '.join(e.also_read_by)}." if e.also_read_by else ""
            lines.append(
                f"| `{e.env}` | {_cell(e.type)} | {_cell(e.default_doc)} | {f'`{e.bounds}`' if e.bounds else ''} "
                f"| {_cell(e.description)}{also} |"
            )
        lines.append("")
    return "\n".join(lines)


def render_env_example(groups: list[tuple[Source, list[Entry]]]) -> str:
    lines = [
        "# Every Perennial setting, with its default. Copy to .env (read from the working directory)",
        "# or export as environment variables. `perennial serve` flags override both.",
        f"# Generated by `{COMMAND}` from the settings classes, like",
        "# docs/configuration.md (types and ranges there). Do not edit by hand.",
    ]
    for source, group in groups:
        if not group:
            continue
        lines += ["", f"# --- {source.cls.__name__} ({source.path}) " + "-" * 40]
        for e in group:
            lines += textwrap.wrap(e.description, width=98, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"# {e.env}={e.default}")
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    """The two files' contents, from one walk over the settings classes."""
    groups = entries(sources())
    return {DOC: render_markdown(groups), ENV_EXAMPLE: render_env_example(groups)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.write_text(text)
    verb = "out of date" if args.check else "written"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
