"""Waiting for the gateway's write-behind store: a POST is acknowledged before its row is
written (store/writer.py), so reads after writes poll until they see it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Call ``read`` until ``done(result)``; return the last result (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)
