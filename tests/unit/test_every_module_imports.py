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
