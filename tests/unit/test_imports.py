"""The layer graph, enforced: every import of ours points down, and only ``engine`` imports vLLM.

    perennial  (composition root: the processes; may import everything)
    clients    (HTTP only: nothing of ours)          server -> engine, store, evals, weights
    learner -> engine, store, evals, weights         engine -> weights
    evals, weights, store: nothing of ours (store is the lowest layer)
    harness -> engine, weights  (runs real processes for bench/ and tests/; nothing imports it)

``server`` and ``learner`` never import each other; ``perennial/`` plugs the learner into the
gateway. Inside ``server`` imports point down its own layers (``SERVER_LAYERS``): shared
machinery below the resources, ``server.app`` alone above them. ``bench/`` never imports
``tests``. Imports inside functions count too (the test reads every import statement).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# package -> the packages of ours it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "perennial": {"clients", "server", "learner", "engine", "weights", "evals", "store"},
    "clients": set(),
    "server": {"engine", "store", "evals", "weights"},
    "learner": {"engine", "store", "evals", "weights"},
    "engine": {"weights"},
    "evals": set(),
    "weights": set(),
    "store": set(),
    "harness": {"engine", "weights"},
}
OURS = set(ALLOWED)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def wrong_imports(package: str) -> list[str]:
    """``file -> module`` for every import of ours that ``ALLOWED`` does not let ``package`` make."""
    allowed = ALLOWED[package] | {package}
    return [
        f"{p.relative_to(REPO)} -> {name}"
        for p in modules(package)
        for name in sorted(imports_of(p))
        if name.split(".")[0] in OURS and name.split(".")[0] not in allowed
    ]


def test_every_package_is_in_the_layer_graph():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "migrations"}
    assert packages == OURS


def test_every_package_is_installed_and_in_the_image():
    pyproject = (REPO / "pyproject.toml").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in OURS:
        assert f'"{package}*"' in pyproject, package
        assert f"COPY {package} ./{package}" in dockerfile, package


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_layer_graph(package):
    assert wrong_imports(package) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_only_the_engine_package_imports_vllm(package):
    offenders = [
        str(p.relative_to(REPO))
        for p in modules(package)
        if any(n == "vllm" or n.startswith("vllm.") for n in imports_of(p))
    ]
    assert offenders == [] or package == "engine"


def test_bench_does_not_import_tests():
    """The benches share ``harness`` with the tests, never ``tests`` itself."""
    offenders = [
        f"{p.relative_to(REPO)} -> {name}"
        for p in sorted((REPO / "bench").rglob("*.py"))
        for name in sorted(imports_of(p))
        if name.split(".")[0] == "tests"
    ]
    assert offenders == []


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """A learner module importing the gateway is caught (the test can fail)."""
    fake = tmp_path / "learner"
    fake.mkdir()
    (fake / "bad.py").write_text("from server.app import create_app\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert wrong_imports("learner") == ["learner/bad.py -> server.app"]


# server's inner layers, lowest first. A module imports its own part (server.chat.* among
# themselves) and the parts of lower layers: never one above it or beside it on its layer.
SERVER_LAYERS: list[set[str]] = [
    {"server.settings", "server.errors", "server.metrics", "server.rounds", "server.quotas"},
    {"server.auth", "server.middleware", "server.storage", "server.deps"},
    {"server.openapi"},  # the document machinery: the key schemes, the helpers resources use
    {"server.chat"},  # resources: responses and versions build on the chat service
    {"server.responses", "server.feedback", "server.versions", "server.ops", "server.dashboard"},
    {"server.admin"},  # admin views of stored feedback and versions
    {"server.app"},  # the one module that mounts every resource
]


def server_part(module: str) -> tuple[int, str] | None:
    """(layer, part) of a ``server`` module, e.g. ``server.chat.routes`` -> (3, "server.chat")."""
    for layer, parts in enumerate(SERVER_LAYERS):
        for part in parts:
            if module == part or module.startswith(part + "."):
                return layer, part
    return None


def server_imports(path: Path) -> set[str]:
    """The ``server`` modules ``path`` imports (``from server import chat`` is ``server.chat``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "server" and node.level == 0:
            names.update(f"server.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.startswith("server.")}


def server_modules() -> list[tuple[Path, str]]:
    return [
        (p, ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"))
        for p in modules("server")
    ]


def back_up_imports() -> list[str]:
    """``file -> module`` for every import inside ``server`` that points up or sideways."""
    wrong = []
    for path, module in server_modules():
        mine = server_part(module)
        for name in sorted(server_imports(path)):
            theirs = server_part(name)
            if mine and theirs and theirs[1] != mine[1] and theirs[0] >= mine[0]:
                wrong.append(f"{path.relative_to(REPO)} -> {name}")
    return wrong


def test_every_server_module_has_a_layer():
    assert [m for _, m in server_modules() if m != "server" and server_part(m) is None] == []


def test_server_imports_point_down_its_layers():
    assert back_up_imports() == []


def test_the_server_check_sees_a_back_up_import(tmp_path, monkeypatch):
    """A resource importing the app, or another resource of its layer, is caught (it can fail)."""
    fake = tmp_path / "server" / "feedback"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from server import app\nfrom server.versions.service import Versions\n")
    (fake / "good.py").write_text(
        "from server.chat.service import Served\nfrom server.feedback import rules\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert back_up_imports() == [
        "server/feedback/bad.py -> server.app",
        "server/feedback/bad.py -> server.versions.service",
    ]
