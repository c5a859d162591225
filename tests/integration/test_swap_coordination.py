"""Several gateways over the same replicas, coordinated through the shared Redis.

The engines are fakes (tests/support/fake_replicas.py: the routing and swap logic is what is
under test); the lock, the pub/sub events and the acks go through the real Redis on
127.0.0.1:6379, each test on its own key prefix. Two engine processes under two real gateway
processes are in tests/integration/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from redis.asyncio import Redis

from harness.stores import REDIS_URL
from server.chat.service import ServedModel
from server.versions.coordination import SwapBusy
from server.versions.redis_coordination import RedisCoordination
from server.versions.swap import HotSwapper, SwapTarget
from tests.support.fake_replicas import fleet, gateway_view, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class Gateway:
    """One gateway's view: its replica set over the shared fake engines, swapper, coordination."""

    def __init__(self, redis: Redis, prefix: str, replicas, base: SwapTarget, name: str, **kw):
        self.replicas = replicas
        self.served = ServedModel("m", base.version)
        self.coordination = RedisCoordination(redis, prefix=prefix, name=name, **kw)
        self.swapper = HotSwapper(replicas, self.served, base, coordination=self.coordination)


@pytest.fixture
async def two(tmp_path, redis_prefix):
    """Gateways a and b over the same two engines."""
    redis = Redis.from_url(REDIS_URL)
    log: list = []
    replicas_a = fleet(2, log)
    replicas_b = gateway_view([r.client for r in replicas_a.replicas])
    base = SwapTarget("base", snapshot(tmp_path, "base"))
    a = Gateway(redis, redis_prefix, replicas_a, base, "gw-a", drain_timeout_s=5)
    b = Gateway(redis, redis_prefix, replicas_b, base, "gw-b", drain_timeout_s=5)
    for g in (a, b):
        await g.coordination.start()
    yield a, b, log
    for g in (a, b):
        await g.coordination.close()
    await redis.aclose()


async def eventually(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_rolling_swap_waits_for_the_other_gateways_requests_and_updates_its_view(two, tmp_path):
    a, b, log = two
    b_first = b.replicas.replicas[0]
    b_first.acquire()  # a request of gateway b outstanding on engine-0

    async def b_finishes_later():
        await eventually(lambda: not b_first.in_rotation, what="b to take engine-0 out")
        await asyncio.sleep(0.3)
        assert ("e0", "pause") not in log  # a waits for b's request before pausing
        log.append(("e0", "b's request done"))
        b_first.release()

    finishing = asyncio.create_task(b_finishes_later())
    report = await a.swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    await finishing
    assert log.index(("e0", "b's request done")) < log.index(("e0", "pause"))
    assert [r["timings"]["replica"] for r in report.replicas] == ["engine-0", "engine-1"]
    # b learnt each replica's version as it was swapped, and the served version at the end
    await eventually(lambda: b.served.version == "v1", what="b to hear 'finished'")
    assert [r.version for r in b.replicas.replicas] == ["v1", "v1"]
    assert all(r.in_rotation for r in b.replicas.replicas)
    assert b.swapper.current.version == "v1" and b.swapper.current.checksum == "sum-v1"
    assert b.swapper.held["engine-1"].path == snapshot(tmp_path, "v1")
    assert not a.swapper.busy
    await eventually(lambda: not b.swapper.busy, what="b to hear 'ended'")


async def test_one_rolling_swap_at_a_time_across_gateways(two, tmp_path):
    a, b, _ = two
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_a():
        async with a.coordination.hold():
            entered.set()
            await release.wait()

    holding = asyncio.create_task(hold_a())
    await entered.wait()
    await eventually(lambda: b.swapper.busy, what="b to hear a's rolling swap start")
    with pytest.raises(SwapBusy, match="gw-a"):
        await b.swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
    assert [r.client.weights for r in b.replicas.replicas] == ["base", "base"]  # nothing touched
    release.set()
    await holding
    report = await b.swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))  # free again
    assert report.version == "v1"
    await eventually(lambda: a.served.version == "v1", what="a to hear b's rolling swap")


async def test_a_replica_drained_by_a_gateway_that_died_comes_back_once_its_lock_expires(two, redis_prefix):
    a, b, _ = two
    redis = a.coordination.redis
    # a gateway that took the lock, announced a drain of engine-1 and died (no renewals)
    await redis.set(f"{redis_prefix}:swap:lock", "gw-dead:x", px=3000)
    await redis.publish(
        f"{redis_prefix}:swap:events",
        json.dumps({"kind": "draining", "from": "gw-dead", "replica": "http://e1", "ack": 1}),
    )
    await eventually(lambda: not a.replicas.replicas[1].in_rotation, what="a to drain engine-1")
    assert not b.replicas.replicas[1].in_rotation
    await asyncio.sleep(1.8)
    assert not a.replicas.replicas[1].in_rotation  # the lock still stands: it stays out
    await eventually(
        lambda: a.replicas.replicas[1].in_rotation and b.replicas.replicas[1].in_rotation,
        timeout=8,
        what="engine-1 back in rotation after the lock expired",
    )
    assert a.replicas.replicas[1].version == "base"  # what the engine itself reports


async def test_a_booting_gateway_waits_for_a_rolling_swap_in_progress(two):
    a, b, _ = two
    order = []

    async def rolling_swap():
        async with a.coordination.hold():
            order.append("a holds")
            await asyncio.sleep(0.5)
            order.append("a done")

    task = asyncio.create_task(rolling_swap())
    await asyncio.sleep(0.1)
    async with b.coordination.hold(wait_s=5):
        order.append("b holds")
    await task
    assert order == ["a holds", "a done", "b holds"]


async def test_a_booting_gateway_acks_drains_at_once_and_a_malformed_event_stops_nobody(
    tmp_path, redis_prefix
):
    """A gateway still booting (no replicas attached yet) has no requests to drain: it acks at
    once instead of holding every replica of the rolling swap for the whole drain timeout. A
    malformed event on the channel is skipped; the listener keeps acking."""
    redis = Redis.from_url(REDIS_URL)
    log: list = []
    replicas = fleet(2, log)
    base = SwapTarget("base", snapshot(tmp_path, "base"))
    a = Gateway(redis, redis_prefix, replicas, base, "gw-a", drain_timeout_s=20)
    booting = RedisCoordination(redis, prefix=redis_prefix, name="gw-booting", drain_timeout_s=20)
    try:
        await a.coordination.start()
        await booting.start()  # subscribed, never attached to a swapper
        await redis.publish(a.coordination.channel, json.dumps({"kind": "draining", "from": "gw-x"}))
        started = time.monotonic()
        await a.swapper.swap(SwapTarget("v1", snapshot(tmp_path, "v1")))
        assert time.monotonic() - started < 10  # two drains, each would wait 20 s without the ack
        assert [r.client.weights for r in replicas.replicas] == ["v1", "v1"]
        assert booting._listener is not None and not booting._listener.done()
    finally:
        await a.coordination.close()
        await booting.close()
        await redis.aclose()
