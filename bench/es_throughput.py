"""ES throughput: seconds per population member (load / evaluate / update) and members per minute.

    .venv/bin/python bench/es_throughput.py [--members 8] [--prompts 16] [--max-tokens 16]
                                            [--arms direct,reload,transformers] [--out FILE]

Arms, measured in one run, one after the other (never two on the CPU at once):

* ``direct``: the learner engine (vLLM), members written from the fp32 master plus a slice of
  the shared noise table straight into the CPU kernels' buffers, then re-packed;
* ``reload``: the same engine through vLLM's generic ``reload_weights`` (+ the tied lm_head
  re-pack), i.e. the straightforward path;
* ``transformers``: the naive baseline of the original ES-at-scale code: a transformers model,
  fresh seeded Gaussians per tensor added in place, batched greedy ``generate``, restore by
  regenerating the noise and subtracting (the table also reports the drift that leaves).

Each member is scored on the same ``--prompts`` addition prompts, greedy, ``--max-tokens``.
``update`` is the ES step for the population (``members / 2`` seeds) divided by ``members``.
Medians over members. Writes ``bench/results/es_throughput.json``. Timings depend on what else
runs on the machine: re-measure on a quiet machine before quoting them.
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
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.learner_engine import LearnerEngine, NoiseSpec  # noqa: E402
from learner.fitness import Batch, FitnessEvaluator  # noqa: E402
from learner.items import ItemSet, load_items  # noqa: E402
from tests.support.server import shared_model_dir  # noqa: E402
from weights.es import iteration_seeds, zscore  # noqa: E402

SIGMA, ALPHA = 3e-3, 4e-3


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


async def engine_arms(model_dir: Path, items: ItemSet, args, arms: list[str]) -> dict[str, dict]:
    """Measure the vLLM arms on one learner engine (switching its load path between arms)."""
    log = Path(tempfile.mkdtemp(prefix="es-bench-")) / "engine.log"
    started = time.monotonic()
    engine = await LearnerEngine.start(model_dir, log_file=log)
    print(f"learner engine up in {time.monotonic() - started:.0f} s ({engine.init_info['load_mode']})")
    results = {}
    try:
        evaluator = FitnessEvaluator(engine, items, minibatch=args.prompts, max_tokens=args.max_tokens)
        batch = evaluator.batch(0)
        await evaluator.evaluate(batch)  # warm-up
        for arm in arms:
            info = await engine.init_state(model_dir, model_dir, NoiseSpec(load_mode=arm))
            if info["load_mode"] != arm:
                print(f"  {arm}: unavailable ({info['rejected']}); skipped")
                continue
            results[arm] = await _engine_arm(engine, evaluator, batch, args)
    finally:
        await engine.close()
    return results


async def _engine_arm(engine, evaluator: FitnessEvaluator, batch: Batch, args) -> dict:
    seeds = iteration_seeds(0, 0, args.members // 2)
    rows, scores = [], []
    for seed in seeds:
        for sign in (1, -1):
            t0 = time.perf_counter()
            timing = await engine.load_member(seed, SIGMA, sign)
            t1 = time.perf_counter()
            scores.append((await evaluator.evaluate(batch)).verifiable or 0.0)
            rows.append(
                {
                    "load_s": t1 - t0,
                    "perturb_s": timing["perturb_s"],
                    "repack_s": timing["reload_s"],
                    "evaluate_s": time.perf_counter() - t1,
                }
            )
    z = zscore(scores)
    t0 = time.perf_counter()
    await engine.apply_update(seeds, (z[0::2] - z[1::2]).tolist(), alpha=ALPHA, population=len(rows))
    await engine.load_master()
    update_s = time.perf_counter() - t0
    return _summary(rows, update_s, {"mean_score": statistics.fmean(scores)})


def _summary(rows: list[dict], update_s: float, extra: dict) -> dict:
    out = {k: round(_median(rows, k), 4) for k in rows[0]}
    out["update_per_member_s"] = round(update_s / len(rows), 4)
    out["total_per_member_s"] = round(out["load_s"] + out["evaluate_s"] + out["update_per_member_s"], 4)
    out["members_per_min"] = round(60 / out["total_per_member_s"], 2)
    out["members"] = len(rows)
    return {**out, **extra}


def transformers_arm(model_dir: Path, items: ItemSet, args) -> dict:
    """The naive loop: fresh noise per tensor, perturb in place, generate, subtract to restore."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    params = [p for _, p in sorted(model.named_parameters())]  # tied head appears once
    theta0 = [p.detach().clone() for p in params]
    chats = [
        tok.apply_chat_template(list(i.messages), add_generation_prompt=True, tokenize=False)
        for i in items.verifiable[: args.prompts]
    ]
    inputs = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)

    def noise(seed: int, i: int, p: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 100_003 + i)  # one stream per tensor
        return torch.randn(p.shape, generator=g)

    @torch.no_grad()
    def add(seed: int, scale: float) -> None:
        for i, p in enumerate(params):
            p.add_(noise(seed, i, p), alpha=scale)

    @torch.no_grad()
    def evaluate() -> float:
        from evals.verifiers import score

        out = model.generate(
            **inputs, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return statistics.fmean(
            score(t, i.reference, i.verifier) for t, i in zip(texts, items.verifiable, strict=False)
        )

    evaluate()  # warm-up
    seeds = iteration_seeds(0, 0, args.members // 2)
    rows, scores = [], []
    for seed in seeds:
        for sign in (1, -1):
            t0 = time.perf_counter()
            add(seed, sign * SIGMA)
            t1 = time.perf_counter()
            scores.append(evaluate())
            t2 = time.perf_counter()
            add(seed, -sign * SIGMA)  # restore by subtraction, as the original code did
            rows.append({"load_s": (t1 - t0) + (time.perf_counter() - t2), "evaluate_s": t2 - t1})
    drift = max(float((p.detach() - q).abs().max()) for p, q in zip(params, theta0, strict=True))
    z = zscore(scores)
    t0 = time.perf_counter()
    for seed, c in zip(seeds, (z[0::2] - z[1::2]).tolist(), strict=True):
        add(seed, ALPHA / len(rows) * c)
    update_s = time.perf_counter() - t0
    return _summary(rows, update_s, {"mean_score": statistics.fmean(scores), "restore_max_abs_error": drift})


def print_table(results: dict[str, dict]) -> None:
    cols = ["load_s", "evaluate_s", "update_per_member_s", "total_per_member_s", "members_per_min"]
    print(f"\n| arm | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}")
    for arm, r in results.items():
        print(
            f"| {arm} | {' | '.join(f'{r[c]:.3f}' if c != 'members_per_min' else f'{r[c]:.1f}' for c in cols)} |"
        )
    for arm, r in results.items():
        share = {k: r[k] / r["total_per_member_s"] for k in ("load_s", "evaluate_s", "update_per_member_s")}
        split = ", ".join(f"{k.removesuffix('_s')} {v:.0%}" for k, v in share.items())
        extra = f"; perturb {r['perturb_s']:.3f} s + repack {r['repack_s']:.3f} s" if "perturb_s" in r else ""
        print(f"  {arm}: {split}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--arms", default="direct,reload,transformers")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "es_throughput.json")
    args = parser.parse_args()
    arms = args.arms.split(",")
    model_dir = shared_model_dir()
    items = load_items(REPO / "evals" / "tasks" / "addition" / "train.jsonl")
    load_before = os.getloadavg()
    results = asyncio.run(engine_arms(model_dir, items, args, [a for a in arms if a != "transformers"]))
    if "transformers" in arms:
        results["transformers"] = transformers_arm(model_dir, items, args)
    print_table(results)
    report = {
        "results": results,
        "members": args.members,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "sigma": SIGMA,
        "model": str(model_dir),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "command": " ".join(["bench/es_throughput.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
