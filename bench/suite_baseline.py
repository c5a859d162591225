"""Base-model scores on the shipped suites, the cost of scoring them and of the drift (KL)
measurement, and a KL calibration for the gate's ``max_kl``.

    .venv/bin/python bench/suite_baseline.py [--engine-url URL] [--noise 5e-4,1e-3,2e-3,4e-3]
                                             [--k 2] [--max-tokens 32] [--probes 32]

Without ``--engine-url`` it starts one engine on the bundled model (as ``perennial serve`` does)
and stops it at the end. Steps, all against that one engine:

1. score every shipped suite with the base (greedy, all suites in one concurrent batch);
2. KL(base || base) on the probe prompts in two phases (sample, then score): must be ~0;
3. calibration, for each ``--noise`` RMS s: write base + s * N(0, 1) (seeded, one stream per
   tensor) to a temporary directory, load it through the serving worker extension
   (``perennial_load_weights``), score the suites and sample the probes, reload the base and
   score the samples: KL(perturbed || base) next to the suite scores it came with. The base is
   reloaded at the end. ``--noise ""`` skips this.

Prints the tables and writes ``bench/results/suite_baseline.json``. Timings depend on what else
runs on the machine; take final numbers on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.client import EngineClient  # noqa: E402
from engine.supervisor import EngineSpec, EngineSupervisor, resolve_dtype  # noqa: E402
from evals.scoring import score_suites  # noqa: E402
from evals.suites import load_builtin_suites, load_probes  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.kl import kl_estimate, measure_kl, sample_continuations, score_samples  # noqa: E402

MODEL = "smollm2-135m-instruct"
RESULTS = REPO / "bench" / "results" / "suite_baseline.json"


def perturbed_copy(model_dir: Path, out_dir: Path, rms: float, seed: int = 0) -> float:
    """Write ``model_dir``'s weights + rms * N(0, 1) to ``out_dir``; return ||noise||_2."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model_dir / "model.safetensors"))
    squared = 0.0
    for i, name in enumerate(sorted(weights)):
        tensor = weights[name].float()
        gen = torch.Generator().manual_seed(seed * 100_003 + i)  # one stream per tensor
        noise = torch.randn(tensor.shape, generator=gen) * rms
        squared += float(noise.double().square().sum())
        weights[name] = (tensor + noise).to(weights[name].dtype).contiguous()
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return math.sqrt(squared)


async def load(client: EngineClient, path: Path) -> float:
    """Load the weights in ``path`` into the engine; reset its prefix cache. Returns seconds."""
    started = time.perf_counter()
    await client.rpc("perennial_load_weights", path=str(path))
    await client.reset_prefix_cache()
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def engine(url: str | None, model_dir: Path) -> AsyncIterator[str]:
    if url:
        yield url
        return
    log_file = Path(tempfile.gettempdir()) / "perennial-suite-baseline-engine.log"
    spec = EngineSpec(model_dir=model_dir, served_name=MODEL, log_file=log_file, cpu_threads="all")
    supervisor = EngineSupervisor(spec, start_timeout_s=900)
    started = time.perf_counter()
    await supervisor.start()
    print(f"engine up in {time.perf_counter() - started:.0f} s ({resolve_dtype(spec.dtype)})")
    try:
        yield supervisor.url
    finally:
        await supervisor.stop()


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


async def calibrate(client, model_dir, suites, probes, levels, args) -> list[dict]:
    rows = []
    for rms in levels:
        with tempfile.TemporaryDirectory(prefix="perennial-noise-") as tmp:
            l2 = perturbed_copy(model_dir, Path(tmp), rms)
            load_s = await load(client, Path(tmp))
            scores = await score_suites(client, MODEL, suites, concurrency=args.concurrency)
            samples = await sample_continuations(client, MODEL, probes, k=args.k, max_tokens=args.max_tokens)
        await load(client, model_dir)
        est = kl_estimate(samples, await score_samples(client, MODEL, samples))
        rows.append(
            {
                "noise_rms": rms,
                "noise_l2": round(l2, 2),
                "load_s": round(load_s, 2),
                "kl": est.kl,
                "kl_stderr": est.stderr,
                "n_tokens": est.n_tokens,
                "suites": {name: round(s.score, 4) for name, s in scores.items()},
            }
        )
        print(f"noise {rms:g}: KL {est.kl:.4f} +- {est.stderr:.4f}, suites {rows[-1]['suites']}")
    return rows


async def measure_base(client: EngineClient, suites, probes, args) -> dict:
    """Suite scores of the loaded model, their cost, and the two-phase KL against itself."""
    warm = dict(list(suites.items())[:1])
    await score_suites(client, MODEL, warm, concurrency=8)  # compile / cache warm-up
    started = time.perf_counter()
    scores = await score_suites(client, MODEL, suites, concurrency=args.concurrency)
    scoring_s = time.perf_counter() - started
    started = time.perf_counter()
    drift = await measure_kl(client, MODEL, probes, k=args.k, max_tokens=args.max_tokens)
    drift_s = time.perf_counter() - started
    return {
        "suites": {
            name: {
                "score": round(s.score, 4),
                "n": s.n,
                "failed": s.failed,
                "skill": suites[name].skill,
                "version": suites[name].version,
                "sha256": s.sha256,
            }
            for name, s in scores.items()
        },
        "suite_scoring": {
            "items": sum(s.n for s in scores.values()),
            "wall_s": round(scoring_s, 1),
            "concurrency": args.concurrency,
        },
        "drift_base_vs_base": {
            "probes": len(probes),
            "k": args.k,
            "max_tokens": args.max_tokens,
            "kl": drift.kl,
            "kl_stderr": drift.stderr,
            "n_tokens": drift.n_tokens,
            "wall_s": round(drift_s, 1),
            **{key: round(value, 1) for key, value in drift.timings.items()},
        },
    }


async def run(args: argparse.Namespace) -> dict:
    model_dir = shared_model_dir()
    suites, probes = load_builtin_suites(), load_probes()[: args.probes]
    levels = [float(x) for x in args.noise.split(",") if x.strip()]
    async with engine(args.engine_url, model_dir) as url:
        client = EngineClient(url, timeout_s=900)
        try:
            base = await measure_base(client, suites, probes, args)
            calibration = await calibrate(client, model_dir, suites, probes, levels, args)
        finally:
            await client.aclose()
    return {
        "model": MODEL,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
        },
        **base,
        "drift_calibration": calibration,
        "note": "timings from a shared 2-core machine; re-measure on a quiet one",
    }


def report(result: dict) -> None:
    suites = result["suites"]
    rows = [[n, s["skill"], s["n"], f"{s['score']:.3f}"] for n, s in suites.items()]
    table("Base model on the shipped suites", ["suite", "skill", "items", "score"], rows)
    sc, dr = result["suite_scoring"], result["drift_base_vs_base"]
    table(
        "Cost",
        ["measurement", "work", "seconds"],
        [
            ["score all suites", f"{sc['items']} items, concurrency {sc['concurrency']}", sc["wall_s"]],
            [
                "KL, two phases",
                f"{dr['probes']} probes x {dr['k']} x <= {dr['max_tokens']} tokens",
                dr["wall_s"],
            ],
        ],
    )
    print(
        f"\nKL(base || base) = {dr['kl']:.2e} +- {dr['kl_stderr']:.1e} nats/token ({dr['n_tokens']} tokens)"
    )
    if result["drift_calibration"]:
        header = ["noise rms", "||noise||", "KL nats/tok", *suites]
        rows = [
            [
                f"{r['noise_rms']:g}",
                r["noise_l2"],
                f"{r['kl']:.4f} +- {r['kl_stderr']:.4f}",
                *(f"{r['suites'][n]:.3f}" for n in suites),
            ]
            for r in result["drift_calibration"]
        ]
        table("KL calibration: base + noise", header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-url", help=f"use a running engine serving {MODEL}")
    parser.add_argument("--noise", default="5e-4,1e-3,2e-3,4e-3", help="noise RMS levels")
    parser.add_argument("--k", type=int, default=2, help="continuations per probe")
    parser.add_argument("--max-tokens", type=int, default=32, help="length of each continuation")
    parser.add_argument("--probes", type=int, default=64, help="use at most this many probes")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
