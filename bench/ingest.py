"""Feedback ingest throughput and the chat latency cost of interaction logging, via gateways.

    .venv/bin/python bench/ingest.py [--engine-url URL] [--requests 20000] [--concurrency 64]
                                     [--pairs 100] [--out bench/results/ingest.json]

Starts one vLLM engine (or attaches to ``--engine-url``) and four gateways attached to it:
``redis+postgres`` (a fresh database on 127.0.0.1:5432, Redis 127.0.0.1:6379 with a private key
prefix; the stream consumer inside the gateway, the default), ``redis+postgres, perennial
ingest`` (the same with the consumer in a separate ``perennial ingest`` process), ``sqlite``
(the embedded default) and ``logging off`` (SQLite, ``PERENNIAL_LOG_INTERACTIONS=false``). Then:

1. Feedback ingest, per storage arm: ``--requests`` single-item ``POST /v1/feedback`` requests
   at ``--concurrency`` (aiohttp on uvloop, keep-alive), spread over 32 real completions.
   Reports accepted/s, p50/p95 latency, then waits until the database holds every accepted item
   and checks it holds each exactly once ("stored/s" counts from the first request to the last
   row stored). A second pass posts ``/v1/feedback/batch`` with 100 items per request.
2. Chat latency with logging on vs off, in the same run: ``--pairs`` rounds of one 1-token chat
   per gateway, the order rotating each round so drift hits every arm alike; p50 per arm and
   the paired median difference to the logging-off gateway.
3. In-process cost of ``StoreRecorder.record`` (what a chat pays for logging on the request
   path), timed directly.

The load generator shares the 2 CPU cores with the gateway, Postgres, Redis and the consumer:
numbers are for the whole machine doing all of it. Prints a table; writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from engine.supervisor import EngineSpec, EngineSupervisor, resolve_dtype  # noqa: E402
from harness.processes import RunningServer, shared_model_dir, start_ingest_worker, start_server  # noqa: E402
from harness.stores import PG_SERVER, REDIS_URL, create_database, delete_prefix, drop_database  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import Feedback  # noqa: E402

MODEL = "smollm2-135m-instruct"
KEY = "sk-bench"
SEPARATE = "redis+postgres, perennial ingest"
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def chat(session: aiohttp.ClientSession, url: str, i: int) -> tuple[str, float]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Count to {i % 7 + 2}."}],
        "max_tokens": 1,
        "temperature": 0,
    }
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body, headers=HEADERS) as r:
        payload = await r.json()
        assert r.status == 200, payload
    return payload["id"], time.perf_counter() - started


async def load(session, url: str, path: str, bodies: list[bytes], concurrency: int) -> dict:
    """Post every body with ``concurrency`` workers; latencies of the 200s, count of the rest."""
    latencies: list[float] = []
    failures = 0
    ids: list[str] = []
    queue = iter(bodies)

    async def worker() -> None:
        nonlocal failures
        for body in queue:
            started = time.perf_counter()
            async with session.post(url + path, data=body, headers=HEADERS) as r:
                payload = await r.json()
                if r.status != 200:
                    failures += 1
                    continue
            latencies.append(time.perf_counter() - started)
            ids.extend(d["id"] for d in payload["data"]) if "data" in payload else ids.append(payload["id"])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "latencies": latencies,
        "failures": failures,
        "ids": ids,
        "wall": time.perf_counter() - started,
        "started": started,
    }


async def stored_count(db_url: str, ids: list[str]) -> int:
    db = Database.connect(db_url)
    try:
        async with db.sessions() as s:
            total = 0
            for i in range(0, len(ids), 5000):
                chunk = ids[i : i + 5000]
                total += await s.scalar(select(func.count()).where(Feedback.id.in_(chunk)))
            return total
    finally:
        await db.close()


async def ingest(session, gw: RunningServer, db_url: str, cids: list[str], args, batch: int) -> dict:
    n_requests = args.requests if batch == 1 else max(1, args.requests // batch)

    def item(i: int) -> dict:
        return {"completion_id": cids[i % len(cids)], "reward": (i % 21 - 10) / 10, "task": "bench"}

    if batch == 1:
        bodies = [json.dumps(item(i)).encode() for i in range(n_requests)]
        path = "/v1/feedback"
    else:
        bodies = [
            json.dumps({"items": [item(i * batch + j) for j in range(batch)]}).encode()
            for i in range(n_requests)
        ]
        path = "/v1/feedback/batch"
    run = await load(session, gw.url, path, bodies, args.concurrency)
    deadline = time.perf_counter() + 300
    while (n := await stored_count(db_url, run["ids"])) < len(run["ids"]):
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.2)
    stored_wall = time.perf_counter() - run["started"]
    await asyncio.sleep(1.0)
    exactly_once = await stored_count(db_url, run["ids"]) == len(run["ids"]) == len(set(run["ids"]))
    lat = run["latencies"]
    return {
        "requests": n_requests,
        "items_per_request": batch,
        "accepted_items": len(run["ids"]),
        "failed_requests": run["failures"],
        "accepted_items_per_s": len(run["ids"]) / run["wall"],
        "p50_ms": statistics.median(lat) * 1000,
        "p95_ms": pct(lat, 0.95) * 1000,
        "stored_items_per_s": n / stored_wall,
        "stored_exactly_once": exactly_once,
    }


async def chat_latency(session, arms: dict[str, RunningServer], pairs: int) -> dict:
    names = list(arms)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(pairs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append((await chat(session, arms[name].url, i))[1])
    off = times["logging off"]
    result = {}
    for name in names:
        diffs = [a - b for a, b in zip(times[name], off, strict=True)]
        result[name] = {
            "p50_ms": statistics.median(times[name]) * 1000,
            "p95_ms": pct(times[name], 0.95) * 1000,
            "paired_diff_vs_off_p50_ms": statistics.median(diffs) * 1000,
        }
    return result


async def recorder_cost(n: int = 20_000) -> dict:
    """Time ``StoreRecorder.record`` itself on a realistic interaction (direct sink, SQLite)."""
    from server.chat.recorder import StoreRecorder
    from server.chat.service import Interaction
    from store.db import upgrade
    from store.sink import IngestSink

    work = Path(tempfile.mkdtemp(prefix="bench-recorder-"))
    url = f"sqlite:///{work / 'r.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database.connect(url)
    sink = IngestSink(db, None)
    await sink.start()
    recorder = StoreRecorder(sink)
    request = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France? " * 4},
        ],
        "max_tokens": 32,
        "temperature": 0.7,
    }
    costs = []
    for i in range(n):
        interaction = Interaction(
            completion_id=f"chatcmpl-{uuid.uuid4().hex}",
            request=request,
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris. " * 10},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            model_version="base",
            usage={"prompt_tokens": 40, "completion_tokens": 32},
            latency_ms=300.0,
            caller="key_bench",
            stream=False,
            created=int(time.time()),
        )
        started = time.perf_counter()
        recorder.record(interaction)
        costs.append(time.perf_counter() - started)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the writer drain, as between real requests
    await sink.close()
    await db.close()
    return {"calls": n, "p50_us": statistics.median(costs) * 1e6, "p95_us": pct(costs, 0.95) * 1e6}


async def start_gateways(engine_url: str, model_dir: Path, work: Path, pg_url: str, prefix: str):
    base = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_ENGINE_URL": engine_url,
        "PERENNIAL_API_KEYS": KEY,
        "PERENNIAL_ADMIN_KEY": "pk-bench",
        "PERENNIAL_LOG_LEVEL": "warning",
    }
    redis_pg = {**base, "PERENNIAL_DATABASE_URL": pg_url, "PERENNIAL_REDIS_URL": REDIS_URL}
    envs = {
        "redis+postgres": {**redis_pg, "PERENNIAL_REDIS_PREFIX": prefix},
        SEPARATE: {
            **redis_pg,
            "PERENNIAL_REDIS_PREFIX": prefix + "-sep",
            "PERENNIAL_INGEST_CONSUMER": "false",
        },
        "sqlite": base,
        "logging off": {**base, "PERENNIAL_LOG_INTERACTIONS": "false"},
    }
    gateways = {}
    for i, (name, env) in enumerate(envs.items()):
        gateways[name] = await asyncio.to_thread(start_server, work / f"gw{i}", env, timeout=120)
    worker = start_ingest_worker(envs[SEPARATE], work / "ingest.log")
    return gateways, worker


async def measure(engine_url: str, args, work: Path) -> dict:
    model_dir = shared_model_dir()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    db_name = f"perennial_bench_{uuid.uuid4().hex[:8]}"
    pg_url = create_database(PG_SERVER, db_name)
    gateways: dict[str, RunningServer] = {}
    worker = None
    try:
        gateways, worker = await start_gateways(engine_url, model_dir, work, pg_url, prefix)
        db_urls = {
            "redis+postgres": pg_url,
            SEPARATE: pg_url,
            "sqlite": f"sqlite:///{gateways['sqlite'].data_dir}/perennial.db",
        }
        connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            result: dict = {"ingest": {}, "ingest_batch": {}}
            for name, db_url in db_urls.items():
                print(f"feedback ingest: {name} ...", flush=True)
                gw = gateways[name]
                cids = [(await chat(session, gw.url, i))[0] for i in range(32)]
                warm = max(1, args.requests // 20)
                await load(
                    session,
                    gw.url,
                    "/v1/feedback",
                    [json.dumps({"completion_id": cids[0], "label": "up"}).encode()] * warm,
                    args.concurrency,
                )
                result["ingest"][name] = await ingest(session, gw, db_url, cids, args, 1)
                result["ingest_batch"][name] = await ingest(session, gw, db_url, cids, args, 100)
            print("chat latency, logging on vs off ...", flush=True)
            chat_arms = {k: v for k, v in gateways.items() if k != SEPARATE}
            result["chat"] = await chat_latency(session, chat_arms, args.pairs)
        result["recorder"] = await recorder_cost()
        return result
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        for gw in gateways.values():
            gw.stop()
        delete_prefix(REDIS_URL, prefix)
        delete_prefix(REDIS_URL, prefix + "-sep")
        drop_database(PG_SERVER, db_name)


def table(r: dict) -> str:
    rows = [
        "| arm | endpoint | accepted items/s | p50 ms | p95 ms | stored items/s | exactly once |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, endpoint in (("ingest", "POST /v1/feedback"), ("ingest_batch", "POST /v1/feedback/batch (100)")):
        for arm, a in r[key].items():
            rows.append(
                f"| {arm} | {endpoint} | {a['accepted_items_per_s']:.0f} | {a['p50_ms']:.2f} | "
                f"{a['p95_ms']:.2f} | {a['stored_items_per_s']:.0f} | {a['stored_exactly_once']} |"
            )
    rows += [
        "",
        "| chat (1 token), logging | p50 ms | p95 ms | paired diff vs off, p50 ms |",
        "|---|---|---|---|",
    ]
    for arm, a in r["chat"].items():
        rows.append(
            f"| {arm} | {a['p50_ms']:.1f} | {a['p95_ms']:.1f} | {a['paired_diff_vs_off_p50_ms']:+.2f} |"
        )
    rec = r["recorder"]
    rows += [
        "",
        f"StoreRecorder.record on the request path: p50 {rec['p50_us']:.1f} us, "
        f"p95 {rec['p95_us']:.1f} us ({rec['calls']} calls).",
    ]
    return "\n".join(rows)


async def main_async(args) -> dict:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    engine = None
    engine_url = args.engine_url
    if engine_url is None:
        spec = EngineSpec(model_dir=shared_model_dir(), served_name=MODEL, log_file=work / "engine.log")
        engine = EngineSupervisor(spec)
        print(f"starting engine ({resolve_dtype('auto')}) ...", flush=True)
        await engine.start()
        engine_url = engine.url
    try:
        result = await measure(engine_url, args, work)
    finally:
        if engine is not None:
            await engine.stop()
    result["settings"] = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "pairs": args.pairs,
        "load_generator": "aiohttp + uvloop, keep-alive, in the bench process",
        # Other work on the machine skews everything: a quiet 2-core box shows ~0 here.
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-url", help="attach to a running vLLM server instead of starting one")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    args = parser.parse_args()
    uvloop.install()
    result = asyncio.run(main_async(args))
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
