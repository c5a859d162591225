"""docs/configuration.md and .env.example: written from the settings classes, kept in sync."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from perennial import config_docs
from perennial.config_docs import COMMAND, DOC, ENV_EXAMPLE, Source, sources

STALE = f"out of date with the settings classes: run `{COMMAND}`"


def _variables(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text, flags=re.MULTILINE))


def _ours() -> set[type[BaseSettings]]:
    """Every settings class defined in our packages, private bases included."""
    for module in ("server.settings", "learner.settings"):
        importlib.import_module(module)
    packages = {"store", "server", "learner", "engine", "perennial", "clients", "evals", "weights"}
    found, todo = set(), [BaseSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.split(".")[0] in packages:
                found.add(sub)
    return found


def _declared() -> set[str]:
    return {config_docs.env_name(c, name, f) for c in _ours() for name, f in c.model_fields.items()}


def test_configuration_md_is_up_to_date():
    assert DOC.read_text() == config_docs.outputs()[DOC], f"docs/configuration.md is {STALE}"


def test_env_example_is_up_to_date():
    assert ENV_EXAMPLE.read_text() == config_docs.outputs()[ENV_EXAMPLE], f".env.example is {STALE}"


def test_both_files_list_the_same_variables_and_every_field():
    in_doc = _variables(DOC.read_text(), r"^\| `(PERENNIAL_[A-Z0-9_]+)`")
    in_example = _variables(ENV_EXAMPLE.read_text(), r"^# (PERENNIAL_[A-Z0-9_]+)=")
    assert in_doc == in_example
    assert in_doc == _declared(), STALE


def test_every_setting_has_a_description():
    missing = [
        f"{c.__name__}.{name}" for c in _ours() for name, f in c.model_fields.items() if not f.description
    ]
    assert not missing, missing


def test_every_public_settings_class_of_ours_is_a_section():
    sections = {s.cls for s in sources()}
    public = {c for c in _ours() if not c.__name__.startswith("_")}
    assert public <= sections, sorted(c.__qualname__ for c in public - sections)


class _Toy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_")

    port: int = Field(80, ge=0, le=65535, description="A port.")
    share: float = Field(0.25, gt=0, lt=1, description="A | share, of <data_dir>.")
    mode: Literal["a", "b"] = Field("a", description="A mode.")
    keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, description="Keys.")
    cap: float | None = Field(None, description="A cap.")
    path: Path = Field(Path("x"), description="A path.")
    on: bool = Field(True, description="A switch.", alias="TOY_SWITCH")


def test_one_walk_renders_type_default_range_and_description():
    toy = [Source(_Toy, (_Toy,))]
    ((_, group),) = config_docs.entries(toy)
    by_env = {e.env: e for e in group}
    assert [*by_env] == ["TOY_PORT", "TOY_SHARE", "TOY_MODE", "TOY_KEYS", "TOY_CAP", "TOY_PATH", "TOY_SWITCH"]
    assert (by_env["TOY_PORT"].type, by_env["TOY_PORT"].bounds, by_env["TOY_PORT"].default) == (
        "int",
        ">= 0, <= 65535",
        "80",
    )
    assert by_env["TOY_SHARE"].bounds == "> 0, < 1"
    assert by_env["TOY_MODE"].type == "one of: a, b"
    assert by_env["TOY_KEYS"].type == "list of secret str (comma-separated)"
    assert (by_env["TOY_KEYS"].default, by_env["TOY_KEYS"].default_doc) == ("", "empty")
    assert (by_env["TOY_CAP"].type, by_env["TOY_CAP"].default_doc) == ("float, optional", "unset")
    assert (by_env["TOY_PATH"].type, by_env["TOY_SWITCH"].default) == ("path", "true")
    doc = config_docs.render_markdown(config_docs.entries(toy))
    assert "| `TOY_SHARE` | float | `0.25` | `> 0, < 1` | A \\| share, of `<data_dir>`. |" in doc
    example = config_docs.render_env_example(config_docs.entries(toy))
    assert "# A | share, of <data_dir>.\n# TOY_SHARE=0.25\n" in example


@pytest.mark.parametrize("check", [True, False])
def test_main_checks_or_writes(monkeypatch, tmp_path, check):
    doc, example = tmp_path / "configuration.md", tmp_path / ".env.example"
    monkeypatch.setattr(config_docs, "ROOT", tmp_path)
    monkeypatch.setattr(config_docs, "outputs", lambda: {doc: "doc\n", example: "env\n"})
    assert config_docs.main(["--check"] if check else []) == (1 if check else 0)
    assert doc.exists() is not check
    if not check:
        assert config_docs.main(["--check"]) == 0
