"""The async SDK mirrors the sync one: same public methods, same parameters."""

from __future__ import annotations

import inspect

import pytest

from clients import Admin, AsyncAdmin, AsyncPerennial, Perennial


def public(cls) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync", "aio"), [(Perennial, AsyncPerennial), (Admin, AsyncAdmin)])
def test_same_methods_and_parameters(sync, aio):
    ours, theirs = public(sync), public(aio)
    assert ours.keys() == theirs.keys()
    for name, signature in ours.items():
        assert list(signature.parameters) == list(theirs[name].parameters), name
        assert inspect.iscoroutinefunction(getattr(aio, name)) or inspect.isasyncgenfunction(
            getattr(aio, name)
        ), name
