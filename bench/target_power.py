"""How often does the held-out target check promote a candidate that learned nothing?

    .venv/bin/python bench/target_power.py [--noise 2e-3,4e-3] [--seeds 20] [--pool-sizes 16,64,256]
                                           [--engine-url URL] [--out bench/results/target_power.json]

One engine on the bundled model (as ``perennial serve`` starts it). Held-out pools of the kinds
the gate meets:

* ``reference``: additions with their reference answers (the shipped addition items), scored by
  reference likelihood, as feedback with a reference or a correction is;
* ``greedy``: the same additions scored as ``learner_target_scoring=greedy`` scores them: the
  verifier's 0/1 score of each item's greedy reply (16 tokens), what users see;
* ``rated``: the base's own sampled replies to the open prompts, rated +1 / -1 by the simulated
  ``concise`` users' hidden preference, scored by reward-weighted likelihood, as thumbs are.

The incumbent is the base. **Noise-only candidates**: for each ``--noise`` RMS s and each of
``--seeds`` seeds, base + s * N(0, 1) (one seeded stream per tensor; 2e-3 and 4e-3 put
``||noise||_2`` at ~23 and ~46, the drift a default round's candidate records). Each candidate
is scored on both pools item by item (``learner.heldout``'s score: one prompt-logprob pass) and
judged by the gate's own target check (``learner.gate.reject_without_suites``: the paired
interval's lower bound > ``min_gain``, at least ``min_target_items`` items) on the first n items
of each pool for every n in ``--pool-sizes``. A promotion of such a candidate is a false
promotion: the table gives the share with its one-sided 95% Clopper-Pearson upper bound, and the
paired interval's half width (how small a real gain the check can see at that pool size).

Prints the table and writes ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gate_power import clopper_pearson_upper  # noqa: E402
from bench.suite_baseline import MODEL, engine, load, perturbed_copy, table  # noqa: E402
from clients.sim_tasks import OPEN_PROMPTS, STYLES  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from evals.thresholds import Thresholds  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.fitness import mean_logprob, score_verifiable  # noqa: E402
from learner.gate import paired_interval, reject_without_suites  # noqa: E402
from learner.heldout import item_weight  # noqa: E402
from learner.items import Item, parse_item  # noqa: E402

ADDITION = [REPO / "evals/tasks/addition/train.jsonl", REPO / "evals/tasks/addition/heldout.jsonl"]


def reference_pool(n: int) -> list[Item]:
    rows = [json.loads(line) for path in ADDITION for line in path.read_text().splitlines() if line.strip()]
    return [parse_item(row, i) for i, row in enumerate(rows[:n])]


async def rated_pool(client: EngineClient, n: int, seed: int = 0) -> list[Item]:
    """The base's sampled replies to the open prompts, rated +1/-1 by the concise preference."""
    prefers, items = STYLES["concise"], []
    per_prompt = -(-n // len(OPEN_PROMPTS))
    for i, prompt in enumerate(OPEN_PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        body = {"model": MODEL, "messages": messages, "max_tokens": 64, "temperature": 0.7}
        got = await client.chat({**body, "n": per_prompt, "seed": seed + i})
        for j, choice in enumerate(got["choices"]):
            reply = choice["message"]["content"] or ""
            row = {"id": f"open-{i}-{j}", "messages": messages, "completion": reply}
            items.append(parse_item({**row, "reward": 1.0 if prefers(reply) else -1.0}, len(items)))
    return items[:n]


async def score(client: EngineClient, items: list[Item], concurrency: int = 16) -> dict[str, float]:
    """The target check's item score (weight x mean per-token log-probability) of every item."""
    served, sem = SimpleNamespace(client=client, served_name=MODEL), asyncio.Semaphore(concurrency)

    async def one(item: Item) -> float:
        async with sem:
            return item_weight(item) * await mean_logprob(served, item)

    values = await asyncio.gather(*(one(i) for i in items))
    return {i.id: v for i, v in zip(items, values, strict=True)}


async def score_greedy(client: EngineClient, items: list[Item]) -> dict[str, float]:
    """``learner_target_scoring=greedy``: the verifier's score of each item's greedy reply."""
    served = SimpleNamespace(client=client, served_name=MODEL)
    got = await score_verifiable(served, items, max_tokens=16, concurrency=16)
    return {i.id: v for i, v in zip(items, got.scores, strict=True)}


async def score_all(client: EngineClient, pools: dict[str, list[Item]]) -> dict[str, dict[str, float]]:
    """Each pool by likelihood, and the reference pool also greedy (``greedy`` pool)."""
    out = {name: await score(client, items) for name, items in pools.items()}
    out["greedy"] = await score_greedy(client, pools["reference"])
    return out


def judge(cand: dict[str, float], base: dict[str, float], n: int, t: Thresholds, unit: str) -> dict:
    keys = list(base)[:n]
    c, b = {k: cand[k] for k in keys}, {k: base[k] for k in keys}
    ci = paired_interval(c, b, t.confidence, key="target")
    return {
        "n": n,
        "promoted": reject_without_suites(c, b, t, unit=unit) is None,
        "mean": ci.mean,
        "low": ci.low,
        "half_width": (ci.high - ci.low) / 2,
    }


async def run(args: argparse.Namespace) -> dict:
    model_dir, t = shared_model_dir(), Thresholds()
    sizes = [int(x) for x in args.pool_sizes.split(",")]
    rows: list[dict] = []
    async with engine(args.engine_url, model_dir) as url:
        client = EngineClient(url, timeout_s=900)
        try:
            pools = {"reference": reference_pool(max(sizes)), "rated": await rated_pool(client, max(sizes))}
            base = await score_all(client, pools)
            accepted = sum(i.reward > 0 for i in pools["rated"]) / len(pools["rated"])
            print(
                f"pools: reference {len(pools['reference'])} items, rated {len(pools['rated'])} "
                f"({accepted:.0%} rated up)",
                flush=True,
            )
            for rms in [float(x) for x in args.noise.split(",") if x]:
                for seed in range(1, args.seeds + 1):
                    started = time.perf_counter()
                    with tempfile.TemporaryDirectory(prefix="perennial-target-") as tmp:
                        l2 = perturbed_copy(model_dir, Path(tmp), rms, seed=seed)
                        await load(client, Path(tmp))
                        cand = await score_all(client, pools)
                    for name in cand:
                        for n in sizes:
                            if n <= len(base[name]):
                                unit = "points" if name == "greedy" else "nats/token"
                                verdict = judge(cand[name], base[name], n, t, unit)
                                rows.append({"pool": name, "noise_rms": rms, "seed": seed, **verdict})
                    print(
                        f"rms {rms:g} seed {seed}: ||noise|| {l2:.1f}, "
                        + ", ".join(
                            f"{r['pool']}@{r['n']} {r['mean']:+.4f} {'PROMOTED' if r['promoted'] else 'rejected'}"
                            for r in rows
                            if r["noise_rms"] == rms and r["seed"] == seed
                        )
                        + f" ({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            await load(client, model_dir)
        finally:
            await client.aclose()
    return {"thresholds": t.model_dump(), "pool_sizes": sizes, "candidates": rows}


def summarise(result: dict) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in result["candidates"]:
        groups.setdefault((r["pool"], r["noise_rms"], r["n"]), []).append(r)
    out = []
    for (pool, rms, n), rs in sorted(groups.items()):
        k = sum(r["promoted"] for r in rs)
        out.append(
            {
                "pool": pool,
                "noise_rms": rms,
                "items": n,
                "candidates": len(rs),
                "promoted": k,
                "rate": k / len(rs),
                "rate_upper95": clopper_pearson_upper(k, len(rs)),
                "median_mean": statistics.median(r["mean"] for r in rs),
                "median_half_width": statistics.median(r["half_width"] for r in rs),
            }
        )
    return out


def report(summary: list[dict]) -> None:
    table(
        "Noise-only candidates through the target check (false promotions)",
        ["pool", "noise RMS", "items", "promoted", "rate (95% upper)", "median gain", "median CI half width"],
        [
            [
                s["pool"],
                f"{s['noise_rms']:g}",
                str(s["items"]),
                f"{s['promoted']}/{s['candidates']}",
                f"{s['rate']:.0%} ({s['rate_upper95']:.0%})",
                f"{s['median_mean']:+.4f}",
                f"{s['median_half_width']:.4f}",
            ]
            for s in summary
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-url", help=f"use a running engine serving {MODEL}")
    parser.add_argument("--noise", default="2e-3,4e-3", help="noise RMS levels")
    parser.add_argument("--seeds", type=int, default=20, help="noise candidates per level")
    parser.add_argument("--pool-sizes", default="16,64,256", help="items of each pool the check sees")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/target_power.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["summary"] = summarise(result)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    report(result["summary"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
