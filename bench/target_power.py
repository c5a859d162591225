"""How often does the held-out target check promote a candidate that learned nothing?

    .venv/bin/python bench/target_power.py [--noise 2e-3,4e-3] [--seeds 20] [--pool-sizes 16,64,256]
                                           [--arms rated,rated-raw] [--style concise] [--up-share 0.25]
                                           [--engine-url URL]
                                           [--out bench/results/target_power.json]

One engine on the bundled model (as ``perennial serve`` starts it). Held-out pools of the kinds
the gate meets:

* ``reference``: additions with their reference answers (the shipped addition items), scored by
  reference likelihood, as feedback with a reference or a correction is;
* ``greedy``: the same additions scored as ``learner_target_scoring=greedy`` scores them: the
  verifier's 0/1 score of each item's greedy reply (16 tokens), what users see;
* ``rated``: the base's own sampled replies to the open prompts, rated +1 / -1 by the simulated
  users' hidden preference (``--style``: ``concise``, at most 25 words, which the base's
  64-token samples never met in our runs; ``enthusiastic``, an exclamation mark, neither; or
  ``--up-share q``: up for the shortest share q of the replies, a mix), scored by
  reward-weighted likelihood as the gate scores thumbs (rewards centred where the pool is mostly
  rated down: ``learner.items.rated_weights``);
* ``rated-raw``: the same, weighted by the raw reward as before the centring, for comparison.

``--arms`` picks some of them (the ``reference`` pool's greedy decoding is most of the time).

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
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
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
from learner.heldout import item_weights  # noqa: E402
from learner.items import Item, ItemSet, RatedItem, VerifiableItem, parse_item  # noqa: E402

ADDITION = [REPO / "evals/tasks/addition/train.jsonl", REPO / "evals/tasks/addition/heldout.jsonl"]


def reference_pool(n: int) -> list[Item]:
    rows = [json.loads(line) for path in ADDITION for line in path.read_text().splitlines() if line.strip()]
    return [parse_item(row, i) for i, row in enumerate(rows[:n])]


async def rated_pool(
    client: EngineClient, n: int, seed: int = 0, style: str = "concise", up_share: float | None = None
) -> list[Item]:
    """The base's sampled replies to the open prompts, rated +1/-1 by a simulated style's
    preference, or (``up_share``) up for the shortest ``up_share`` of them by word count, down
    for the rest: a concise taste relative to what the model writes, so the pool is a mix."""
    prefers, items = STYLES[style], []
    per_prompt = -(-n // len(OPEN_PROMPTS))
    for i, prompt in enumerate(OPEN_PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        body = {"model": MODEL, "messages": messages, "max_tokens": 64, "temperature": 0.7}
        got = await client.chat({**body, "n": per_prompt, "seed": seed + i})
        for j, choice in enumerate(got["choices"]):
            reply = choice["message"]["content"] or ""
            row = {"id": f"open-{i}-{j}", "messages": messages, "completion": reply}
            items.append(parse_item({**row, "reward": 1.0 if prefers(reply) else -1.0}, len(items)))
    random.Random(seed).shuffle(items)  # each pool size's first n items mix the prompts
    items = items[:n]
    if up_share is not None:
        words = sorted(len(i.completion.split()) for i in items)
        cut = words[max(0, int(up_share * len(words)) - 1)]
        items = [replace(i, reward=1.0 if len(i.completion.split()) <= cut else -1.0) for i in items]
    return items


async def score(client: EngineClient, items: list[Item], concurrency: int = 16) -> dict[str, float]:
    """Each item's mean per-token log-probability of its reply (the target check's score before
    its weight, which depends on the items judged together: :func:`weighted`)."""
    served, sem = SimpleNamespace(client=client, served_name=MODEL), asyncio.Semaphore(concurrency)

    async def one(item: Item) -> float:
        async with sem:
            return await mean_logprob(served, item)

    values = await asyncio.gather(*(one(i) for i in items))
    return {i.id: v for i, v in zip(items, values, strict=True)}


def weighted(items: list[Item], centred: bool) -> dict[str, float]:
    """Item id -> weight: the gate's (:func:`learner.heldout.item_weights`, rewards centred where
    mostly down) or, ``centred=False``, the raw reward as before centring (for comparison)."""
    if centred:
        return item_weights(
            ItemSet(
                [i for i in items if isinstance(i, VerifiableItem)],
                [i for i in items if isinstance(i, RatedItem)],
            )
        )
    return {i.id: i.reward if isinstance(i, RatedItem) else 1.0 for i in items}


async def score_greedy(client: EngineClient, items: list[Item]) -> dict[str, float]:
    """``learner_target_scoring=greedy``: the verifier's score of each item's greedy reply."""
    served = SimpleNamespace(client=client, served_name=MODEL)
    got = await score_verifiable(served, items, max_tokens=16, concurrency=16)
    return {i.id: v for i, v in zip(items, got.scores, strict=True)}


# pool arm -> (items, scoring): likelihood arms weigh each item's score (:func:`weighted`)
ARMS = {
    "reference": ("reference", "likelihood"),
    "greedy": ("reference", "greedy"),
    "rated": ("rated", "centred"),
    "rated-raw": ("rated", "raw"),
}


async def score_all(client: EngineClient, pools: dict[str, list[Item]], arms: list[str]) -> dict[str, dict]:
    """Each needed pool's raw likelihoods, and the reference pool's greedy scores if asked."""
    out = {name: await score(client, pools[name]) for name in {ARMS[a][0] for a in arms}}
    if "greedy" in arms:
        out["greedy"] = await score_greedy(client, pools["reference"])
    return out


def arm_scores(arm: str, scored: dict[str, dict], pools: dict[str, list[Item]], n: int) -> dict[str, float]:
    """The first ``n`` items of the arm's pool as the target check scores them together."""
    pool, scoring = ARMS[arm]
    items = pools[pool][:n]
    if scoring == "greedy":
        return {i.id: scored["greedy"][i.id] for i in items}
    weights = weighted(items, centred=scoring != "raw")
    return {i.id: weights[i.id] * scored[pool][i.id] for i in items}


def judge(c: dict[str, float], b: dict[str, float], n: int, t: Thresholds, unit: str) -> dict:
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
    result = {
        "thresholds": t.model_dump(),
        "pool_sizes": sizes,
        "style": args.style,
        "up_share": args.up_share,
        "candidates": rows,
    }
    async with engine(args.engine_url, model_dir) as url:
        client = EngineClient(url, timeout_s=900)
        try:
            arms = args.arms.split(",")
            pools = {
                "reference": reference_pool(max(sizes)),
                "rated": await rated_pool(client, max(sizes), style=args.style, up_share=args.up_share),
            }
            base = await score_all(client, pools, arms)
            accepted = sum(i.reward > 0 for i in pools["rated"]) / len(pools["rated"])
            result["rated_up_share"] = accepted
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
                        cand = await score_all(client, pools, arms)
                    for arm in arms:
                        for n in sizes:
                            if n <= len(pools[ARMS[arm][0]]):
                                unit = "points" if arm == "greedy" else "nats/token"
                                c, b = arm_scores(arm, cand, pools, n), arm_scores(arm, base, pools, n)
                                rows.append(
                                    {"pool": arm, "noise_rms": rms, "seed": seed, **judge(c, b, n, t, unit)}
                                )
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
                    save(result, args.out)  # a run stopped by hand keeps every candidate so far
            await load(client, model_dir)
        finally:
            await client.aclose()
    return result


def save(result: dict, out: Path) -> None:
    out.write_text(json.dumps({**result, "summary": summarise(result)}, indent=1) + "\n")


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
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"pools and scorings to judge, of {', '.join(ARMS)}"
    )
    parser.add_argument(
        "--style", choices=list(STYLES), default="concise", help="the simulated users who rate the rated pool"
    )
    parser.add_argument(
        "--up-share",
        type=float,
        help="rate up the shortest share of the rated pool's replies instead of --style (a mix)",
    )
    parser.add_argument("--pool-sizes", default="16,64,256", help="items of each pool the check sees")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/target_power.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    save(result, args.out)
    report(summarise(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
