"""The layer graph, enforced: every import of ours points down, and only ``engine`` imports vLLM.

    perennial  (composition root: the processes; may import everything)
    clients    (HTTP only: nothing of ours)          server -> engine, store, evals, weights
    learner -> engine, store, evals, weights         engine -> weights
    evals, weights, store: nothing of ours (store is the lowest layer)
    harness -> engine, weights  (runs real processes for bench/ and tests/; nothing imports it)

``server`` and ``learner`` never import each other; ``perennial/`` plugs the learner into the
gateway. ``bench/`` never imports ``tests``. Imports inside functions count too (the test reads
every import statement).
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
