"""Routing over replicas and the rolling swap's order and rollback, on fake engines (pure logic).

The real thing (two vLLM engines under load, a killed replica, a failed second swap) is
tests/integration/test_replicas.py.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.client import EngineUnavailable
from server.chat.service import ServedModel
from server.versions.swap import HotSwapper, SwapError, SwapTarget
from tests.support.fake_replicas import FakeEngineClient, FakeRuntime, fleet, snapshot


async def test_least_outstanding_routing_spreads_and_skips_out_of_rotation():
    replicas = fleet(3, [])
    for r in replicas.replicas:
        r.client.delay = 0.05
    replies = await asyncio.gather(*(replicas.post("/v1/chat/completions", {}) for _ in range(6)))
    assert sorted(reply["engine"] for reply, _ in replies) == ["e0", "e0", "e1", "e1", "e2", "e2"]
    assert all(r.outstanding == 0 for r in replicas.replicas)
    replicas.replicas[1].in_rotation = False
    replies = await asyncio.gather(*(replicas.post("/v1/chat/completions", {}) for _ in range(4)))
    assert {reply["engine"] for reply, _ in replies} == {"e0", "e2"}


async def test_a_refused_request_is_retried_on_another_replica_and_a_timeout_is_not():
    replicas = fleet(2, [])
    dead = replicas.replicas[0]
    dead.client.dead = True
    dead.runtime = type("StillLooksReady", (FakeRuntime,), {"ready": property(lambda self: True)})(
        dead.client
    )
    for _ in range(3):
        reply, version = await replicas.post("/v1/chat/completions", {})
        assert reply["engine"] == "e1" and version == ""  # no swapper set one here
    assert dead.retried_away >= 1 and dead.outstanding == 0
    replicas.replicas[1].client.dead = True
    with pytest.raises(EngineUnavailable):
        await replicas.post("/v1/chat/completions", {})

    async def slow(path, body):
        raise EngineUnavailable("engine timed out", retryable=False)

    replicas = fleet(2, [])
    replicas.replicas[0].client.post = slow
    replicas.replicas[1].client.post = slow
    with pytest.raises(EngineUnavailable) as info:
        await replicas.post("/v1/chat/completions", {})
    assert not info.value.retryable
    assert sum(r.retried_away for r in replicas.replicas) == 0


async def test_a_rolling_swap_takes_one_replica_out_at_a_time_and_waits_for_its_requests(tmp_path):
    log: list = []
    replicas = fleet(2, log)
    served = ServedModel("m", "base")
    swapper = HotSwapper(replicas, served, SwapTarget("base", snapshot(tmp_path, "base")))
    first = replicas.replicas[0]
    first.acquire()  # a request outstanding on engine-0

    async def finish_later():
        await asyncio.sleep(0.2)
        assert not first.in_rotation and ("e0", "pause") not in log  # drained before pausing
        log.append(("e0", "request done"))
        first.release()

    done = asyncio.create_task(finish_later())
    report = await swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    await done
    assert log.index(("e0", "request done")) < log.index(("e0", "pause"))
    assert [e for e in log if e[0] == "e0"][-3:] == [("e0", "pause"), ("e0", "load", "v1"), ("e0", "resume")]
    assert log.index(("e0", "resume")) < log.index(("e1", "pause"))  # one at a time
    assert [r.version for r in replicas.replicas] == ["v1", "v1"] and served.version == "v1"
    assert all(r.in_rotation for r in replicas.replicas)
    assert [r["timings"]["replica"] for r in report.replicas] == ["engine-0", "engine-1"]


async def test_a_failure_on_the_second_replica_swaps_the_first_back(tmp_path):
    log: list = []
    replicas = fleet(2, log)
    served = ServedModel("m", "base")
    base = snapshot(tmp_path, "base")
    swapper = HotSwapper(replicas, served, SwapTarget("base", base))
    v1 = snapshot(tmp_path, "v1")
    replicas.replicas[1].client.fail_load = str(v1)
    with pytest.raises(SwapError) as info:
        await swapper.swap(SwapTarget("v1", v1))
    assert info.value.restored and info.value.rolled_back == ["engine-0"]
    assert [r.client.weights for r in replicas.replicas] == ["base", "base"]
    assert [r.version for r in replicas.replicas] == ["base", "base"] and served.version == "base"
    assert all(r.in_rotation for r in replicas.replicas)
    assert swapper.current.version == "base"


async def test_the_second_replica_must_hold_the_first_ones_weights(tmp_path):
    replicas = fleet(2, [])
    swapper = HotSwapper(replicas, ServedModel("m", "base"), SwapTarget("base", snapshot(tmp_path, "base")))

    async def other_checksum(method, **kwargs):
        if method == "perennial_weights_checksum":
            return {"checksum": "different"}
        return await FakeEngineClient.rpc(second, method, **kwargs)

    second = replicas.replicas[1].client
    second.rpc = other_checksum
    with pytest.raises(SwapError) as info:
        await swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    assert "engine-1" in str(info.value) and info.value.rolled_back == ["engine-0"]
    assert [r.version for r in replicas.replicas] == ["base", "base"]


async def test_one_replica_stays_in_rotation_during_its_swap(tmp_path):
    replicas = fleet(1, [])
    swapper = HotSwapper(replicas, ServedModel("m", "base"), SwapTarget("base", snapshot(tmp_path, "base")))
    seen = []
    original = replicas.replicas[0].client.pause

    async def pause(mode="wait"):
        seen.append(replicas.replicas[0].in_rotation)
        await original(mode)

    replicas.replicas[0].client.pause = pause
    report = await swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    assert seen == [True] and report.replicas == []  # as before replicas: queued, not refused


async def test_an_engine_that_refuses_its_pause_fails_the_rolling_swap_and_the_first_is_swapped_back(
    tmp_path,
):
    """Not a load failure: the second engine refuses the pause (it died). The rolling swap still ends
    with every replica on the previous version and a SwapError (audited, a 502), never a bare
    error that skips the swap-back; the refusing replica's weights were never touched."""
    log: list = []
    replicas = fleet(2, log)
    served = ServedModel("m", "base")
    swapper = HotSwapper(replicas, served, SwapTarget("base", snapshot(tmp_path, "base")))
    second = replicas.replicas[1].client

    async def refused(mode="wait"):
        raise EngineUnavailable("connection refused")

    second.pause = refused
    with pytest.raises(SwapError) as info:
        await swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    assert "EngineUnavailable" in str(info.value)
    assert info.value.restored and info.value.rolled_back == ["engine-0"]
    assert [r.client.weights for r in replicas.replicas] == ["base", "base"]
    assert [r.version for r in replicas.replicas] == ["base", "base"] and served.version == "base"
    assert all(r.in_rotation for r in replicas.replicas)
    assert ("e1", "resume") in log  # a pause that may have landed is undone


async def test_a_resume_that_fails_after_the_load_keeps_that_replica_out_and_swaps_the_rest_back(tmp_path):
    """The second engine loads v1 then fails to resume: its weights are unknown, so it stays
    out of rotation (restored=False) and the first replica goes back to the previous version."""
    replicas = fleet(2, [])
    served = ServedModel("m", "base")
    swapper = HotSwapper(replicas, served, SwapTarget("base", snapshot(tmp_path, "base")))
    second = replicas.replicas[1].client

    async def resume():
        raise EngineUnavailable("connection dropped")

    second.resume = resume
    with pytest.raises(SwapError) as info:
        await swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    assert not info.value.restored and info.value.rolled_back == ["engine-0"]
    assert replicas.replicas[0].client.weights == "base" and replicas.replicas[0].in_rotation
    assert not replicas.replicas[1].in_rotation
    assert served.version == "base" and swapper.current.version == "base"


async def test_a_replica_left_out_by_a_failed_swap_returns_once_restarted_at_its_version(tmp_path):
    replicas = fleet(2, [])
    swapper = HotSwapper(replicas, ServedModel("m", "base"), SwapTarget("base", snapshot(tmp_path, "base")))
    second = replicas.replicas[1]
    second.in_rotation = False  # as a swap whose restore failed leaves it
    second.client.version = "unknown"  # an attached engine restarted on other weights
    await swapper.restore_held(second)
    assert second.in_rotation and second.version == "base" and second.client.weights == "base"
