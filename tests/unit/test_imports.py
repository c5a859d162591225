"""One-way imports (STYLE.md 2): only engine modules import vllm; clients never import the
server; the learner never imports server routes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["server", "learner", "store", "clients", "perennial"]


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def is_engine_module(path: Path) -> bool:
    return "engine" in path.relative_to(REPO).parts[:-1] or path.stem.startswith("engine")


@pytest.mark.parametrize("package", PACKAGES)
def test_only_engine_modules_import_vllm(package):
    offenders = [
        str(p.relative_to(REPO)) for p in modules(package)
        if any(n == "vllm" or n.startswith("vllm.") for n in imports_of(p)) and not is_engine_module(p)
    ]  # fmt: skip
    assert not offenders


def test_clients_talk_to_the_server_over_http_only():
    offenders = [
        str(p.relative_to(REPO)) for p in modules("clients")
        if any(n.split(".")[0] in {"server", "learner", "store"} for n in imports_of(p))
    ]  # fmt: skip
    assert not offenders


def test_learner_and_store_never_import_server_routes_or_app():
    forbidden = {"server.app", "server.routes", "server.serving", "server.main"}
    offenders = [
        str(p.relative_to(REPO)) for pkg in ("learner", "store") for p in modules(pkg)
        if any(n in forbidden or n.startswith("server.routes") for n in imports_of(p))
    ]  # fmt: skip
    assert not offenders


def test_store_does_not_import_server_or_learner():
    offenders = [
        str(p.relative_to(REPO)) for p in modules("store")
        if any(n.split(".")[0] in {"server", "learner"} for n in imports_of(p))
    ]  # fmt: skip
    assert not offenders
