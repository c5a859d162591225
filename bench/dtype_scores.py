"""What the learner engine's dtype does to the gate's suite scores, and to their time.

    .venv/bin/python bench/dtype_scores.py [--dtypes float32,bfloat16] [--max-items 200]

For each dtype, one learner engine on the bundled model (as the tests prepare it; both cores,
the thread plan ``all``; bf16 on a CPU runs eager, see ``engine.supervisor``), alone on the
machine, scores the base model on every built-in gate suite, trimmed as the gate trims them
(``PERENNIAL_GATE_SUITE_MAX_ITEMS``, 200). Then, per suite, against the first dtype:

* the mean score in each dtype and the paired difference with its 95% bootstrap interval (the
  gate's own ``paired_interval``, over the same items);
* how many items moved by more than 0.01 (the likelihood suites' item scores are continuous,
  so nearly all move a little);
* the seconds the suites took, and their ratio.

A learner engine in bf16 judges members and candidates in bf16; this says how far its
scores of one model are from float32's, which is the noise the dtype adds to every gate check.
Writes ``bench/results/dtype_scores.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.learner_engine import LearnerEngine  # noqa: E402
from engine.supervisor import resolve_dtype  # noqa: E402
from evals.scoring import score_suites  # noqa: E402
from evals.suites import load_builtin_suites, trim  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.gate import paired_interval  # noqa: E402

RESULTS = REPO / "bench" / "results" / "dtype_scores.json"
MOVED = 0.01  # an item whose score moved more than this counts as moved


async def score(dtype: str, max_items: int, log_dir: Path) -> dict:
    """Start a learner engine in ``dtype``, score the base on the suites, stop it."""
    model = shared_model_dir()
    suites = trim(list(load_builtin_suites().values()), max_items)
    started = time.perf_counter()
    engine = await LearnerEngine.start(
        model, base_dir=model, log_file=log_dir / f"engine-{dtype}.log", cpu_threads="all", dtype=dtype
    )
    start_s = time.perf_counter() - started
    try:
        await score_suites(engine.client, engine.served_name, suites[:1])  # warm-up, not timed
        started = time.perf_counter()
        measured = await score_suites(engine.client, engine.served_name, suites)
        wall_s = time.perf_counter() - started
    finally:
        await engine.close()
    print(f"{dtype}: engine up in {start_s:.0f} s, suites in {wall_s:.0f} s", flush=True)
    return {
        "dtype": resolve_dtype(dtype),
        "engine_start_s": round(start_s, 1),
        "suites_s": round(wall_s, 1),
        "suites": {
            name: {"score": r.score, "n": r.n, "failed": r.failed, "items": r.items}
            for name, r in measured.items()
        },
    }


def compare(reference: dict, other: dict) -> dict:
    """Per suite: both means, the paired difference (other - reference) and items moved > MOVED."""
    rows = {}
    for name, ref in reference["suites"].items():
        mine = other["suites"][name]
        interval = paired_interval(mine["items"], ref["items"], 0.95, key=name)
        moved = sum(abs(mine["items"][i] - ref["items"][i]) > MOVED for i in ref["items"])
        rows[name] = {
            "reference": ref["score"],
            "other": mine["score"],
            "diff": interval.mean,
            "low": interval.low,
            "high": interval.high,
            "n": interval.n,
            "moved_items": moved,
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--max-items", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [asyncio.run(score(d, args.max_items, Path(tmp))) for d in dtypes]
    reference = runs[0]
    print(f"\nbase model's gate suites, {len(reference['suites'])} suites, <= {args.max_items} items each")
    print("| dtype | engine start s | suites s | ratio |")
    print("|---|---|---|---|")
    for run in runs:
        ratio = reference["suites_s"] / run["suites_s"]
        print(f"| {run['dtype']} | {run['engine_start_s']} | {run['suites_s']} | {ratio:.2f}x |")
    comparisons = {}
    for run in runs[1:]:
        rows = compare(reference, run)
        comparisons[run["dtype"]] = rows
        print(f"\n{run['dtype']} vs {reference['dtype']} (points, 95% paired bootstrap interval)")
        print(
            f"| suite | {reference['dtype']} | {run['dtype']} | difference [95% CI] | items moved > {MOVED} |"
        )
        print("|---|---|---|---|---|")
        for name, r in rows.items():
            print(
                f"| {name} | {100 * r['reference']:.1f} | {100 * r['other']:.1f} | "
                f"{100 * r['diff']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}] | "
                f"{r['moved_items']} / {r['n']} |"
            )
    command = "bench/dtype_scores.py " + " ".join(sys.argv[1:])
    args.out.write_text(
        json.dumps(
            {"command": command.strip(), "cores": os.cpu_count(), "runs": runs, "comparisons": comparisons},
            indent=1,
        )
        + "\n"
    )
    print(f"\nwrote {args.out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
