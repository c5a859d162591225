"""Hot swap on the real serving engine: change, verify, restore exactly, survive bad snapshots."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import pytest

from engine.client import EngineClient
from engine.replicas import Replica, ReplicaSet
from engine.runtime import EngineRuntime
from harness.snapshots import perturbed_snapshot
from server.chat.service import ServedModel
from server.versions.swap import HotSwapper, SwapError, SwapTarget

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
PROMPTS = ["What is the capital of France?", "Name a color.", "What is 2 + 2?"]


async def greedy(client: EngineClient, prompts=PROMPTS) -> list[str]:
    replies = await asyncio.gather(
        *(
            client.chat(
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": p}],
                    "temperature": 0,
                    "max_tokens": 24,
                }
            )
            for p in prompts
        )
    )
    return [r["choices"][0]["message"]["content"] for r in replies]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, model_dir):
    return perturbed_snapshot(model_dir, tmp_path_factory.mktemp("snap") / "v1", seed=1, scale=0.05)


async def test_swap_changes_outputs_and_rollback_restores_them_exactly(
    engine_url, model_dir, snapshot, tmp_path
):
    client = EngineClient(engine_url)
    runtime = EngineRuntime(client)
    await runtime.start(60)
    served = ServedModel(MODEL, "base")
    swapper = HotSwapper(ReplicaSet([Replica("engine-0", runtime)]), served, SwapTarget("base", model_dir))
    try:
        base_checksum = (await client.rpc("perennial_weights_checksum"))["checksum"]
        base_out = await greedy(client)

        # Concurrent chats overlap the swap: none may fail.
        load = [asyncio.create_task(greedy(client, [f"Count to {i}."])) for i in range(8)]
        await asyncio.sleep(0.3)
        report = await swapper.swap(SwapTarget("v1", snapshot))
        await asyncio.gather(*load)  # raises if any chat failed

        assert report.checksum != base_checksum and report.previous == "base"
        # The gateway proved the direct loader at boot, so even this engine's first swap uses it.
        assert report.load_via == "direct"
        assert served.version == "v1" and await client.weight_version() == "v1"
        assert not await client.is_paused()
        assert await greedy(client) != base_out

        back = await swapper.swap(SwapTarget("base", model_dir, checksum=base_checksum))
        assert back.checksum == base_checksum
        assert await greedy(client) == base_out

        # A corrupt snapshot: the swap fails, base keeps serving with its exact outputs.
        broken = tmp_path / "broken"
        shutil.copytree(snapshot, broken)
        weights = next(broken.glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:10_000_000])
        with pytest.raises(SwapError) as info:
            await swapper.swap(SwapTarget("v2", broken))
        assert info.value.restored and served.version == "base"
        assert await greedy(client) == base_out

        # A checksum that does not match what was recorded for the version: refused, restored.
        with pytest.raises(SwapError):
            await swapper.swap(SwapTarget("v1", snapshot, checksum="0" * 64))
        assert served.version == "base" and await client.weight_version() == "base"
        assert await greedy(client) == base_out
        assert (await client.rpc("perennial_weights_checksum"))["checksum"] == base_checksum

        # Files that do not hash to the recorded sha256: refused before the engine is touched.
        with pytest.raises(SwapError) as info:
            await swapper.swap(SwapTarget("v1", snapshot, sha256="f" * 64))
        assert info.value.restored and "sha256" in str(info.value)
    finally:
        if served.version != "base":
            await swapper.swap(SwapTarget("base", model_dir))
        await runtime.stop()


def test_extension_errors_come_back_as_results_not_crashes(engine_url, tmp_path):
    response = httpx.post(
        engine_url + "/collective_rpc",
        timeout=60,
        json={"method": "perennial_load_weights", "kwargs": {"path": str(tmp_path)}},
    )
    assert response.status_code == 200 and "no safetensors" in response.json()["results"][0]["error"]
    ping = httpx.post(engine_url + "/collective_rpc", json={"method": "perennial_ping"}, timeout=30)
    assert ping.json()["results"][0]["pid"]  # the engine is still up


def test_swap_path_is_prepared_at_boot_and_preparing_again_changes_nothing(engine_url):
    ping = httpx.post(engine_url + "/collective_rpc", json={"method": "perennial_ping"}, timeout=30)
    assert ping.json()["results"][0]["direct_loader"] == "on"
    rpc = {"method": "perennial_prepare_swaps"}
    before = httpx.post(
        engine_url + "/collective_rpc", json={"method": "perennial_weights_checksum"}, timeout=60
    )
    again = httpx.post(engine_url + "/collective_rpc", json=rpc, timeout=60).json()["results"][0]
    assert again["direct_loader"] == "on", again
    after = httpx.post(
        engine_url + "/collective_rpc", json={"method": "perennial_weights_checksum"}, timeout=60
    )
    assert after.json()["results"][0]["checksum"] == before.json()["results"][0]["checksum"]
