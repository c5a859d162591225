"""Hot swap under load: pause-to-resume time, and the latency of chats that overlap a swap.

    .venv/bin/python bench/hot_swap.py [--replicas 1 2] [--swaps 10] [--concurrency 4] [--baseline-s 60]

For each replica count R of ``--replicas``, in the same run: starts `perennial serve` (its own
data dir, SQLite, R supervised CPU engines), registers a candidate `v1` (the base with seeded
noise) with a passing gate decision, then
1. baseline: closed-loop chat load (``--concurrency`` clients, 16 greedy tokens each) with no
   swap, for ``--baseline-s`` seconds;
2. swaps: the same load while the admin API alternates promote v1 / rollback to base
   ``--swaps`` times (each a real verified hot swap; with R > 1 a rolling one), a few seconds
   apart.
Chats whose [start, end] overlaps a swap's [request, reply] are the "overlapping" sample. Prints
a table (one column per R) and writes bench/results/hot_swap.json. Targets (135M model): 0
failed chats; R = 1: pause to resume <= 1.5 s; R = 2: overlapping p99 within 10% of no-swap p99.
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

from harness.processes import shared_model_dir, start_server  # noqa: E402
from harness.snapshots import perturbed_snapshot  # noqa: E402
from store.db import Database  # noqa: E402
from store.versions import add_candidate, record_decision  # noqa: E402

MODEL = "smollm2-135m-instruct"
ADMIN_KEY = "pk-bench-admin"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


async def register_candidate(data_dir: Path, snapshot: Path) -> None:
    db = Database.connect(f"sqlite:///{data_dir / 'perennial.db'}")
    try:
        async with db.sessions() as session:
            await add_candidate(
                session,
                version_id="v1",
                parent_id="base",
                snapshot_path=str(snapshot),
                sha256=None,
                meta={"bench": "hot_swap"},
                metrics={},
            )
            await record_decision(session, version_id="v1", promote=True, reasons=["bench"], checks={})
            await session.commit()
    finally:
        await db.close()


class Load:
    """Closed-loop chat clients recording (start, end, ok) of every request."""

    def __init__(self, url: str, concurrency: int):
        self.url = url + "/v1/chat/completions"
        self.concurrency = concurrency
        self.records: list[tuple[float, float, bool, str]] = []
        self._stop = asyncio.Event()

    async def _client(self, client: httpx.AsyncClient, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            body = {
                "model": MODEL,
                "temperature": 0,
                "max_tokens": 16,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Tell me about the number {k * 1000 + i}."}],
            }
            started = time.perf_counter()
            try:
                r = await client.post(self.url, json=body)
                ok, version = r.status_code == 200, r.headers.get("x-perennial-model-version", "?")
            except httpx.HTTPError:
                ok, version = False, "error"
            self.records.append((started, time.perf_counter(), ok, version))
            i += 1

    async def run_until(self, stop: asyncio.Event) -> None:
        self._stop = stop
        async with httpx.AsyncClient(timeout=300) as client:
            await asyncio.gather(*(self._client(client, k) for k in range(self.concurrency)))


async def measure(url: str, swaps: int, concurrency: int, baseline_s: float, gap_s: float) -> dict:
    load = Load(url, concurrency)
    stop = asyncio.Event()
    runner = asyncio.create_task(load.run_until(stop))
    await asyncio.sleep(baseline_s)
    baseline_end = time.perf_counter()
    windows, reports = [], []
    async with httpx.AsyncClient(timeout=300, headers=ADMIN) as admin:
        for i in range(swaps):
            path, body = (
                ("/admin/versions/v1/promote", {}) if i % 2 == 0 else ("/admin/rollback", {"to": "base"})
            )
            t0 = time.perf_counter()
            r = await admin.post(url + path, json=body)
            t1 = time.perf_counter()
            r.raise_for_status()
            windows.append((t0, t1))
            reports.append({**r.json()["swap"], "call_s": t1 - t0})
            print(
                f"swap {i + 1}/{swaps}: {r.json()['serving']:>4}  pause->resume "
                f"{reports[-1]['pause_to_resume_s']:.2f} s (load via {reports[-1].get('load_via')})",
                flush=True,
            )
            await asyncio.sleep(gap_s)
    stop.set()
    await runner
    base = [e - s for s, e, ok, _ in load.records if ok and e <= baseline_end]
    overlap = [e - s for s, e, ok, _ in load.records if ok and any(s <= w1 and e >= w0 for w0, w1 in windows)]
    failed = sum(not ok for *_, ok, _ in load.records)
    pause = [r["pause_to_resume_s"] for r in reports]
    return {
        "swaps": len(reports),
        "pause_to_resume_s": {"median": statistics.median(pause), "max": max(pause)},
        "drain_s": {"median": statistics.median(r["drain_s"] for r in reports)},
        "load_s": {"median": statistics.median(r["load_s"] for r in reports)},
        "direct_loads": sum(r.get("load_via") == "direct" for r in reports),
        "admin_call_s": {"median": statistics.median(r["call_s"] for r in reports)},
        "chats": {"total": len(load.records), "failed": failed},
        "latency_ms": {
            "no_swap": {"n": len(base), "p50": pct(base, 0.5) * 1000, "p99": pct(base, 0.99) * 1000},
            "overlapping_swap": {
                "n": len(overlap),
                "p50": pct(overlap, 0.5) * 1000,
                "p99": pct(overlap, 0.99) * 1000,
            },
        },
        "reports": reports,
    }


ROWS = [
    ("swaps (promote v1 / rollback base, alternating)", lambda r: f"{r['swaps']}"),
    (
        "pause -> resume per replica, median / max",
        lambda r: f"{r['pause_to_resume_s']['median']:.2f} s / {r['pause_to_resume_s']['max']:.2f} s",
    ),
    ("of which draining in-flight chats, median", lambda r: f"{r['drain_s']['median']:.2f} s"),
    ("of which weight reload (in the worker), median", lambda r: f"{r['load_s']['median']:.2f} s"),
    ("swaps loaded through the direct kernel loader", lambda r: f"{r['direct_loads']} of {r['swaps']}"),
    (
        "whole admin call (sha256 check, every replica's swap, checksum, smoke), median",
        lambda r: f"{r['admin_call_s']['median']:.2f} s",
    ),
    (
        "chat p50 / p99, no swap",
        lambda r: "{p50:.0f} / {p99:.0f} ms (n={n})".format(**r["latency_ms"]["no_swap"]),
    ),
    (
        "chat p50 / p99, overlapping a swap",
        lambda r: "{p50:.0f} / {p99:.0f} ms (n={n})".format(**r["latency_ms"]["overlapping_swap"]),
    ),
    (
        "overlapping p99 / no-swap p99",
        lambda r: f"{r['latency_ms']['overlapping_swap']['p99'] / r['latency_ms']['no_swap']['p99']:.2f}",
    ),
    ("failed chats", lambda r: f"{r['chats']['failed']} of {r['chats']['total']}"),
]


def table(runs: dict[str, dict]) -> str:
    lines = ["| | " + " | ".join(f"{n} replica{'s' if n != '1' else ''}" for n in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in runs.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1], help="replica counts to compare")
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--baseline-s", type=float, default=60.0)
    parser.add_argument("--gap-s", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hot_swap.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    model_dir = shared_model_dir()
    print("writing the candidate snapshot ...", flush=True)
    snapshot = perturbed_snapshot(model_dir, work / "v1", seed=1, scale=0.05)
    runs: dict[str, dict] = {}
    for count in args.replicas:
        env = {
            "PERENNIAL_MODEL_DIR": str(model_dir),
            "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
            "PERENNIAL_LEARNER_MODE": "off",
            "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
            "PERENNIAL_ENGINE_REPLICAS": str(count),
        }
        print(f"starting perennial serve with {count} replica(s) ...", flush=True)
        data = work / f"data-{count}"
        server = start_server(data, env, timeout=960)
        try:
            asyncio.run(register_candidate(data, snapshot))
            runs[str(count)] = asyncio.run(
                measure(server.url, args.swaps, args.concurrency, args.baseline_s, args.gap_s)
            )
        finally:
            server.stop()
    result = {"runs": runs}
    result["settings"] = {
        **vars(args),
        "out": str(args.out),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(table(runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
