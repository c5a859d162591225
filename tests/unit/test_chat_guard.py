"""ChatGuard's pause/resume logic against a fake engine client (the real engine: test_learner_engine)."""

from __future__ import annotations

import asyncio
import time

import pytest

from learner.yielding import ChatGuard


class FakeEngineClient:
    """Records pause/resume calls with their times; optionally fails on pause."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, float]] = []
        self.fail = fail

    async def pause(self, mode: str) -> None:
        if self.fail:
            raise RuntimeError("engine gone")
        assert mode == "keep"
        self.calls.append(("pause", time.perf_counter()))

    async def resume(self) -> None:
        self.calls.append(("resume", time.perf_counter()))


def run(coro):
    return asyncio.run(coro)


def test_pauses_while_chats_are_in_flight_and_resumes_when_they_end():
    client, chats = FakeEngineClient(), {"n": 0}

    async def scenario():
        async with ChatGuard(lambda: chats["n"], client, max_pause_s=10, min_run_s=0, poll_s=0.002) as guard:
            await asyncio.sleep(0.05)
            assert client.calls == []  # no chat: the learner runs
            chats["n"] = 2
            await asyncio.sleep(0.05)
            assert [c for c, _ in client.calls] == ["pause"]
            chats["n"] = 0
            await asyncio.sleep(0.05)
        return guard

    guard = run(scenario())
    assert [c for c, _ in client.calls] == ["pause", "resume"]
    assert guard.pauses == 1 and 0.03 <= guard.paused_s <= 1.0


def test_a_steady_stream_of_chats_cannot_starve_the_learner():
    client = FakeEngineClient()

    async def scenario():
        async with ChatGuard(lambda: 1, client, max_pause_s=0.03, min_run_s=0.03, poll_s=0.002):
            await asyncio.sleep(0.4)

    run(scenario())
    kinds = [c for c, _ in client.calls]
    assert kinds[0] == "pause" and kinds[-1] == "resume" and len(kinds) >= 6
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))  # strictly alternating
    times = [t for _, t in client.calls]
    pauses = [b - a for (k, a), (_, b) in zip(client.calls, client.calls[1:], strict=False) if k == "pause"]
    runs = [b - a for (k, a), (_, b) in zip(client.calls, client.calls[1:], strict=False) if k == "resume"]
    assert max(pauses) < 0.03 + 0.05 and min(runs) >= 0.03  # bounded pauses, guaranteed work
    assert times == sorted(times)


def test_leaving_the_guard_resumes_a_paused_engine():
    client = FakeEngineClient()

    async def scenario():
        async with ChatGuard(lambda: 1, client, max_pause_s=60, min_run_s=0, poll_s=0.002):
            await asyncio.sleep(0.05)

    run(scenario())
    assert [c for c, _ in client.calls] == ["pause", "resume"]


def test_an_engine_that_refuses_the_pause_does_not_fail_the_round(caplog):
    async def scenario():
        async with ChatGuard(
            lambda: 1, FakeEngineClient(fail=True), max_pause_s=1, min_run_s=0, poll_s=0.002
        ):
            await asyncio.sleep(0.05)
        return "round went on"

    assert run(scenario()) == "round went on"
    assert "chat guard stopped" in caplog.text


@pytest.mark.parametrize("chats", [0, 3])
def test_nothing_is_left_paused(chats):
    client = FakeEngineClient()

    async def scenario():
        async with ChatGuard(lambda: chats, client, max_pause_s=0.01, min_run_s=0.01, poll_s=0.001):
            await asyncio.sleep(0.1)

    run(scenario())
    assert not client.calls or client.calls[-1][0] == "resume"


def test_a_dead_engine_at_exit_leaves_the_rounds_own_error(caplog):
    class DiesOnResume(FakeEngineClient):
        async def resume(self) -> None:
            raise ConnectionError("engine gone")

    async def scenario():
        async with ChatGuard(lambda: 1, DiesOnResume(), max_pause_s=60, min_run_s=0, poll_s=0.002):
            await asyncio.sleep(0.05)
            raise RuntimeError("the round's error")

    with pytest.raises(RuntimeError, match="the round's error"):
        run(scenario())
    assert "could not resume" in caplog.text
