"""Learning and forgetting: plain ES vs ES + AWD on the shipped addition task (slow; by hand).

    .venv/bin/python bench/learning.py [--iterations 20] [--eval-every 4] [--awd-lambda 10]
                                       [--awd-kind l2] [--max-minutes 45] [--fresh]

Trains from the bundled SmolLM2-135M-Instruct on ``evals/tasks/addition/train.jsonl`` with
the ``cpu`` preset (N=16, sigma=3e-3, alpha=4e-3, minibatch 16, 16 tokens) for each arm:

* ``es``      awd_lambda = 0 (plain ES);
* ``es_awd``  the given AWD (default L2, lambda = 10: the paper's lambda, at our larger alpha).

Each arm is held to ``--max-minutes`` of wall time (iterations stop at the first held-out
evaluation past it). It reports, for base / es / es_awd: held-out target score (100 items),
prior-capability score (the shipped suites in ``evals/suites/data``, mean over suites, and
per suite), and ||theta - theta0||. Curves go to ``bench/results/learning.png``, numbers to
``bench/results/learning.json``; work files (metrics, snapshots) to ``bench/.work/learning``.

Resumable: each arm's iterations are recorded in ``bench/.work/learning/<arm>.jsonl``; a rerun
re-applies them (bit-exact, seconds) and continues; finished arms are skipped (``--fresh``
starts over). ``--iterations 2 --eval-every 1`` is a smoke run of a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.processes import shared_model_dir  # noqa: E402
from learner.engines import LocalLearnerEngine  # noqa: E402
from learner.es_loop import replay, run_es, target_score  # noqa: E402
from learner.items import load_items  # noqa: E402
from weights.config import ESConfig  # noqa: E402
from weights.meta import SnapshotMeta  # noqa: E402

TASK = REPO / "evals" / "tasks" / "addition"
WORK = REPO / "bench" / ".work" / "learning"
RESULTS = REPO / "bench" / "results"


async def prior_scores(engine) -> dict[str, float]:
    """Mean score per shipped prior suite (greedy; the gate's own scorer)."""
    from evals.scoring import score_suites
    from evals.suites import load_builtin_suites

    scores = await score_suites(engine.client, engine.served_name, load_builtin_suites(), concurrency=32)
    return {name: round(s.score, 4) for name, s in scores.items()}


async def measure(engine, heldout, config: ESConfig) -> dict:
    target = await target_score(engine, heldout, config)
    prior = await prior_scores(engine)
    drift = (await engine.drift())["drift"]
    return {
        "target": round(target, 4),
        "prior": round(sum(prior.values()) / len(prior), 4),
        "prior_suites": prior,
        "drift": round(drift, 4),
    }


def _load(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


async def run_arm(engine, model_dir: Path, name: str, config: ESConfig, items, heldout, args) -> dict:
    """Train one arm from the base (resuming its recorded iterations); return its summary."""
    log, done = WORK / f"{name}.jsonl", WORK / f"{name}.done.json"
    if done.is_file():
        print(f"[{name}] finished earlier; reusing {done}")
        return json.loads(done.read_text())
    await engine.init_state(model_dir, model_dir, config.noise)
    records = _load(log)
    start = await replay(engine, [r for r in records if "seeds" in r], config) if records else 0
    curve = [r for r in records if "eval" in r]
    started = time.monotonic() - sum(r.get("wall_s", 0) for r in records)
    if not curve:
        curve.append(
            {
                "iteration": 0,
                "eval": {"target": round(await target_score(engine, heldout, config), 4), "drift": 0.0},
            }
        )
        _append(log, curve[-1])
    while start < config.iterations and time.monotonic() - started < args.max_minutes * 60:
        end = min(start + args.eval_every, config.iterations)
        result = await run_es(
            engine,
            items,
            config.model_copy(update={"iterations": end}),
            start_iteration=start,
            on_iteration=lambda r: _append(log, r.to_json()),
        )
        start = end
        point = {
            "iteration": end,
            "eval": {
                "target": round(await target_score(engine, heldout, config), 4),
                "drift": round(result.records[-1].drift, 4),
            },
        }
        curve.append(point)
        _append(log, point)
        print(
            f"[{name}] it {end}: target {point['eval']['target']:.3f} drift {point['eval']['drift']:.2f} "
            f"({(time.monotonic() - started) / 60:.1f} min)"
        )
    summary = {
        **await measure(engine, heldout, config),
        "iterations": start,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "curve": curve,
        "config": config.to_dict(),
    }
    await engine.snapshot(
        WORK / f"{name}-snapshot",
        SnapshotMeta(
            parent=str(model_dir), config=config.to_dict(), metrics={"arm": name, "summary": summary}
        ),
    )
    done.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for arm in ("es", "es_awd"):
        curve = results[arm]["curve"]
        xs = [p["iteration"] for p in curve]
        left.plot(xs, [p["eval"]["target"] for p in curve], marker="o", label=arm)
        right.plot(xs, [p["eval"]["drift"] for p in curve], marker="o", label=arm)
    left.axhline(results["base"]["target"], color="grey", linestyle="--", label="base")
    left.set(xlabel="iteration", ylabel="held-out addition score", title="target")
    right.set(xlabel="iteration", ylabel="||theta - theta0||", title="drift")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def print_table(results: dict) -> None:
    suites = list(results["base"]["prior_suites"])
    print(
        f"\n| arm | iterations | minutes | target (held-out) | prior (mean) | {' | '.join(suites)} | ||theta - theta0|| |"
    )
    print("|---" * (6 + len(suites)) + "|")
    for arm in ("base", "es", "es_awd"):
        r = results[arm]
        per = " | ".join(f"{r['prior_suites'][s]:.3f}" for s in suites)
        print(
            f"| {arm} | {r.get('iterations', 0)} | {r.get('minutes', 0)} | {r['target']:.3f} | "
            f"{r['prior']:.3f} | {per} | {r['drift']:.2f} |"
        )


async def main_async(args) -> dict:
    model_dir = shared_model_dir()
    items = load_items(TASK / "train.jsonl")
    heldout = load_items(TASK / "heldout.jsonl").verifiable
    es = ESConfig.preset("cpu", iterations=args.iterations, seed=args.seed)
    awd = es.model_copy(update={"awd_lambda": args.awd_lambda, "awd_kind": args.awd_kind})
    WORK.mkdir(parents=True, exist_ok=True)
    engine = await LocalLearnerEngine.start(model_dir, log_file=WORK / "engine.log", snapshot_root=WORK)
    try:
        base_file = WORK / "base.done.json"
        if not base_file.is_file():
            base_file.write_text(json.dumps(await measure(engine, heldout, es)) + "\n")
        results = {"base": json.loads(base_file.read_text())}
        print(f"[base] target {results['base']['target']:.3f} prior {results['base']['prior']:.3f}")
        results["es"] = await run_arm(engine, model_dir, "es", es, items, heldout, args)
        results["es_awd"] = await run_arm(engine, model_dir, "es_awd", awd, items, heldout, args)
    finally:
        await engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--awd-lambda", type=float, default=10.0)
    parser.add_argument("--awd-kind", choices=["l2", "l1"], default="l2")
    parser.add_argument("--max-minutes", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="forget recorded progress")
    parser.add_argument("--out", type=Path, default=RESULTS / "learning.json")
    args = parser.parse_args()
    if args.fresh and WORK.is_dir():
        for f in WORK.glob("*.json*"):
            f.unlink()
    load_before = os.getloadavg()
    results = asyncio.run(main_async(args))
    print_table(results)
    plot(results, args.out.with_suffix(".png"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "results": results,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "command": " ".join(["bench/learning.py", *sys.argv[1:]]),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
