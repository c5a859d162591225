"""Every module of ours imports: a name moved between modules breaks here, not in a subprocess
(the gateway's ``perennial serve`` failed at start once, and every integration test with it)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("perennial", "clients", "server", "learner", "engine", "evals", "weights", "store")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_module_imports(name):
    importlib.import_module(name)


def test_test_modules_have_unique_basenames():
    """tests/unit and tests/integration are not packages, so pytest imports each test module by
    its basename: two files of one name stop collection for the whole suite (it happened once,
    with test_replicas.py in both)."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test modules share a basename: " + "; ".join(clashes)
