"""Gateway overhead: latency and throughput through Perennial vs calling vLLM directly.

    .venv/bin/python bench/gateway.py [--pairs 40] [--rounds 3] [--requests 64]

Starts one vLLM engine (the supervisor, as `perennial serve` does) and one gateway attached to
it (`perennial serve --engine-url`), then in the same run, interleaving the two arms so drift
hits both alike:
- concurrency 1: `--pairs` requests each way, alternating direct / gateway;
- concurrency 16: `--rounds` rounds of `--requests` requests each way, alternating arms.
Short prompts, exactly 16 output tokens (``ignore_eos``), greedy. Prints a table (medians)
and writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.supervisor import EngineSpec, EngineSupervisor, resolve_dtype  # noqa: E402
from harness.processes import shared_model_dir, start_server  # noqa: E402

MODEL = "smollm2-135m-instruct"
TOKENS = 16


def body(i: int) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say something about the number {i}."}],
        "temperature": 0,
        "max_tokens": TOKENS,
        "ignore_eos": True,
    }


async def one(client: httpx.AsyncClient, url: str, i: int) -> float:
    started = time.perf_counter()
    response = await client.post(url, json=body(i))
    response.raise_for_status()
    assert response.json()["usage"]["completion_tokens"] == TOKENS
    return time.perf_counter() - started


async def burst(client, url: str, n: int, concurrency: int) -> tuple[list[float], float]:
    gate = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> float:
        async with gate:
            return await one(client, url, i)

    started = time.perf_counter()
    latencies = await asyncio.gather(*(limited(i) for i in range(n)))
    return list(latencies), time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(direct: str, gateway: str, pairs: int, rounds: int, requests: int) -> dict:
    arms = {"direct": direct + "/v1/chat/completions", "gateway": gateway + "/v1/chat/completions"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        for url in arms.values():  # warm both paths
            await burst(client, url, 8, 8)
        c1 = {arm: [] for arm in arms}
        for i in range(pairs):
            order = list(arms.items()) if i % 2 == 0 else list(arms.items())[::-1]
            for arm, url in order:
                c1[arm].append(await one(client, url, i))
        c16 = {arm: {"latencies": [], "throughput": []} for arm in arms}
        for r in range(rounds):
            order = list(arms.items()) if r % 2 == 0 else list(arms.items())[::-1]
            for arm, url in order:
                lat, wall = await burst(client, url, requests, 16)
                c16[arm]["latencies"].extend(lat)
                c16[arm]["throughput"].append(requests * TOKENS / wall)
    result = {}
    for arm in arms:
        result[arm] = {
            "c1_p50_ms": statistics.median(c1[arm]) * 1000,
            "c1_p95_ms": pct(c1[arm], 0.95) * 1000,
            "c16_p50_ms": statistics.median(c16[arm]["latencies"]) * 1000,
            "c16_p95_ms": pct(c16[arm]["latencies"], 0.95) * 1000,
            "c16_tokens_per_s": statistics.median(c16[arm]["throughput"]),
        }
    # Paired difference at c=1: each gateway request against its neighbouring direct one.
    diffs = [g - d for g, d in zip(c1["gateway"], c1["direct"], strict=True)]
    result["added_p50_ms_c1"] = statistics.median(diffs) * 1000
    result["throughput_ratio_c16"] = (
        result["gateway"]["c16_tokens_per_s"] / result["direct"]["c16_tokens_per_s"]
    )
    return result


def table(r: dict) -> str:
    rows = [
        "| path | c=1 p50 ms | c=1 p95 ms | c=16 p50 ms | c=16 p95 ms | c=16 tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ("direct", "gateway"):
        a = r[arm]
        rows.append(
            f"| {arm} | {a['c1_p50_ms']:.1f} | {a['c1_p95_ms']:.1f} | {a['c16_p50_ms']:.1f} | "
            f"{a['c16_p95_ms']:.1f} | {a['c16_tokens_per_s']:.1f} |"
        )
    rows.append("")
    rows.append(
        f"Added p50 latency at c=1 (paired): {r['added_p50_ms_c1']:+.2f} ms (target <= 3 ms). "
        f"Throughput at c=16, gateway / direct: {r['throughput_ratio_c16']:.3f} (target >= 0.95)."
    )
    return "\n".join(rows)


async def main_async(args) -> dict:
    model_dir = shared_model_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    spec = EngineSpec(model_dir=model_dir, served_name=MODEL, log_file=work / "engine.log")
    engine = EngineSupervisor(spec)
    print(f"starting engine ({resolve_dtype('auto')}) ...", flush=True)
    await engine.start()
    gateway = None
    try:
        env = {"PERENNIAL_MODEL_DIR": str(model_dir), "PERENNIAL_ENGINE_URL": engine.url}
        gateway = await asyncio.to_thread(start_server, work / "gateway", env, timeout=120)
        print("measuring ...", flush=True)
        result = await measure(engine.url, gateway.url, args.pairs, args.rounds, args.requests)
    finally:
        if gateway is not None:
            gateway.stop()
        await engine.stop()
    result["settings"] = {
        "pairs_c1": args.pairs,
        "rounds_c16": args.rounds,
        "requests_per_round": args.requests,
        "output_tokens": TOKENS,
        "dtype": resolve_dtype("auto"),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gateway.json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
