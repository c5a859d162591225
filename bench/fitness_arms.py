"""Fitness arms: members per minute and a short learning check for each fitness mix.

    .venv/bin/python bench/fitness_arms.py [--arms verifier,reference,mixed] [--iterations 3]
        [--population 8] [--minibatch 16] [--max-tokens 16] [--heldout 48] [--out FILE]

One learner engine (the round's dtype: ``auto``, eager bf16 on CPUs with AVX-512 BF16 and
no AMX, else float32; thread plan ``all``), the shipped addition task
(``evals/tasks/addition``: train items for ES, held-out items for the check). Each arm starts
from the bundled model (``init_state``) and runs ``--iterations`` ES iterations (the ``cpu``
preset's sigma and alpha) with its ``fitness_weights``:

* ``verifier``: ``{"verifiable": 1}``: greedy decoding, 0/1 verifier scores;
* ``reference``: ``{"reference": 1}``: the references' mean per-token log-probability, one
  prompt-logprob pass per item, no decoding;
* ``mixed``: ``{"verifiable": 1, "reference": 1}``: both, each z-scored.

Members per minute = population / (load + evaluate seconds of an iteration); the table shows
the median over iterations and the ratio to ``verifier``. The learning check scores the served
weights before and after on ``--heldout`` held-out items: greedy accuracy (the verifier) and the
mean reference log-probability (nats/token). A few iterations move little: it says whether an
arm moves in the right direction, not how far it goes. The machine kind (lscpu) is printed
beside the figures; timings depend on what else runs there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.supervisor import resolve_dtype  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.engines import LocalLearnerEngine  # noqa: E402
from learner.es_loop import run_es, target_score  # noqa: E402
from learner.heldout import score_pool  # noqa: E402
from learner.items import ItemSet, load_items  # noqa: E402
from weights.config import ESConfig  # noqa: E402

TASK = REPO / "evals" / "tasks" / "addition"
ARMS = {
    "verifier": {"verifiable": 1.0},
    "reference": {"reference": 1.0},
    "mixed": {"verifiable": 1.0, "reference": 1.0},
}


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


async def check(engine, heldout: ItemSet, config: ESConfig) -> dict:
    scores = await score_pool(engine, heldout, config)
    return {"accuracy": await target_score(engine, heldout.verifiable, config), "loglik": scores.mean}


async def main(args: argparse.Namespace) -> dict:
    model_dir = shared_model_dir()
    train = load_items(TASK / "train.jsonl")
    heldout = ItemSet(verifiable=load_items(TASK / "heldout.jsonl").verifiable[: args.heldout])
    work = Path(tempfile.mkdtemp(prefix="fitness-arms-"))
    engine = await LocalLearnerEngine.start(
        model_dir,
        log_file=work / "engine.log",
        cpu_threads="all",
        snapshot_root=work,
        start_timeout_s=args.start_timeout_s,
    )
    results: dict[str, dict] = {}
    try:
        for arm in args.arms.split(","):
            config = ESConfig.preset(
                "cpu",
                iterations=args.iterations,
                population=args.population,
                minibatch=args.minibatch,
                max_tokens=args.max_tokens,
                fitness_weights=ARMS[arm],
            )
            await engine.init_state(model_dir, model_dir, config.noise)
            before = await check(engine, heldout, config)
            started = time.perf_counter()
            result = await run_es(engine, train, config)
            wall = time.perf_counter() - started
            after = await check(engine, heldout, config)
            rates = [
                60 * config.population / (r.timings["load_s"] + r.timings["evaluate_s"])
                for r in result.records
            ]
            results[arm] = {
                "weights": ARMS[arm],
                "members_per_min": statistics.median(rates),
                "rates": [round(x, 2) for x in rates],
                "evaluate_s_per_member": statistics.median(
                    r.timings["evaluate_s"] / config.population for r in result.records
                ),
                "wall_s": round(wall, 1),
                "before": before,
                "after": after,
            }
            print(arm, json.dumps(results[arm]), flush=True)
    finally:
        await engine.close()
    base = results.get("verifier", {}).get("members_per_min")
    kind = f"{machine()}, {resolve_dtype('auto')}"
    print(
        f"\nmachine: {kind}; {args.iterations} iterations x N={args.population}, minibatch {args.minibatch}"
    )
    print(f"{'arm':10} {'members/min':>12} {'vs verifier':>12} {'accuracy':>17} {'ref loglik':>19}")
    for arm, r in results.items():
        ratio = f"{r['members_per_min'] / base:.2f}x" if base else "-"
        acc = f"{r['before']['accuracy']:.3f} -> {r['after']['accuracy']:.3f}"
        ll = f"{r['before']['loglik']:.4f} -> {r['after']['loglik']:.4f}"
        print(f"{arm:10} {r['members_per_min']:12.1f} {ratio:>12} {acc:>17} {ll:>19}")
    report = {"machine": kind, "args": vars(args), "arms": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="verifier,reference,mixed")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--minibatch", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--heldout", type=int, default=48)
    parser.add_argument("--start-timeout-s", type=float, default=1800.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fitness_arms.json"))
    asyncio.run(main(parser.parse_args()))
