"""ES + AWD math on model-sized parameters: per-member perturbation and the update step, CPU vs GPU.

    .venv/bin/python bench/es_math.py [--models smollm2-135m,qwen2.5-1.5b,llama-3b] [--device cpu]
                                      [--pairs 8] [--repeats 5] [--out bench/results/es_math.json]

What the learner worker does per population member and per iteration, on fp32 tensors shaped
like a real checkpoint (random values; the math does not care what they are):

* ``perturb``: ``theta + sign * sigma * eps(seed, name)`` into preallocated buffers for every
  tensor (``weights.es.perturbed``), i.e. the cost of building one member's weights;
* ``step``: one ES step from ``--pairs`` seeds (N = 2 * pairs members) with L2 AWD
  (``weights.es.es_step``: update, anchored decay, drift and sparsity statistics).

The noise table is drawn on the CPU from its seed, as in the learner, then lives on the
device (sized to the largest tensor). Model shapes are the public configs' (Llama layout: q, k,
v, o, gate, up, down, two norms per layer, embedding, untied head where the model has one).
Medians of ``--repeats`` runs after one warm-up; GPU timings synchronize the device. The vLLM
weight load that follows a perturbation is not part of this (see ``bench/es_throughput.py``).
Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weights.es import NoiseTable, es_step, pair_coefficients, perturbed  # noqa: E402

# name -> (hidden, layers, intermediate, vocab, heads, kv_heads, tied)
MODELS = {
    "smollm2-135m": (576, 30, 1536, 49152, 9, 3, True),
    "qwen2.5-1.5b": (1536, 28, 8960, 151936, 12, 2, True),
    "llama-3b": (3072, 28, 8192, 128256, 24, 8, True),  # Llama-3.2-3B
    "llama-8b": (4096, 32, 14336, 128256, 32, 8, False),  # Llama-3.1-8B (needs ~100 GB fp32 x3)
}


def shapes(model: str) -> dict[str, tuple[int, ...]]:
    hidden, layers, inter, vocab, heads, kv_heads, tied = MODELS[model]
    head_dim = hidden // heads
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    out["model.norm.weight"] = (hidden,)
    if not tied:
        out["lm_head.weight"] = (vocab, hidden)
    return out


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure(model: str, device: torch.device, pairs: int, repeats: int) -> dict:
    layout = shapes(model)
    numel = sum(torch.Size(s).numel() for s in layout.values())
    largest = max(torch.Size(s).numel() for s in layout.values())
    table_size = max(1 << 26, 1 << (largest - 1).bit_length())
    started = time.perf_counter()
    table = NoiseTable(table_size, seed=0, device=device)
    table_s = time.perf_counter() - started
    gen = torch.Generator(device=device).manual_seed(1)
    theta0 = {k: 0.02 * torch.randn(s, generator=gen, device=device) for k, s in layout.items()}
    theta = {k: v.clone() for k, v in theta0.items()}
    out = {k: torch.empty_like(v) for k, v in theta0.items()}

    def member(seed: int, sign: int) -> None:
        for _ in perturbed(theta, table, seed, 3e-3, sign, out=out):
            pass

    seeds = list(range(100, 100 + pairs))
    coefficients = pair_coefficients([float((i * 7919) % 13) for i in range(2 * pairs)])

    def step() -> None:
        es_step(
            theta,
            theta0,
            table,
            seeds,
            coefficients,
            alpha=1e-3,
            population=2 * pairs,
            awd_lambda=10.0,
            awd_kind="l2",
        )

    member(0, 1)  # warm-up
    step()
    perturb = [timed(lambda i=i: member(i, 1 if i % 2 else -1), device) for i in range(repeats)]
    steps = [timed(step, device) for _ in range(repeats)]
    p50, s50 = statistics.median(perturb), statistics.median(steps)
    return {
        "model": model,
        "device": str(device),
        "params": numel,
        "fp32_gib": round(numel * 4 / 2**30, 2),
        "noise_table_values": table_size,
        "noise_table_s": round(table_s, 2),
        "perturb_s": round(p50, 4),
        "perturb_runs": [round(x, 4) for x in perturb],
        "step_s": round(s50, 4),
        "step_runs": [round(x, 4) for x in steps],
        "pairs": pairs,
        "step_per_member_s": round(s50 / (2 * pairs), 4),
        "members_per_min_math_only": round(60 / (p50 + s50 / (2 * pairs)), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="smollm2-135m", help=f"comma-separated, of {list(MODELS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--pairs", type=int, default=8, help="antithetic pairs per step (N = 2 * pairs)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "bench/results/es_math.json")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    rows = []
    for model in args.models.split(","):
        row = measure(model, device, args.pairs, args.repeats)
        rows.append(row)
        print(f"{model}: perturb {row['perturb_s']:.4f} s, step {row['step_s']:.3f} s", flush=True)
        del row
        if device.type == "cuda":
            torch.cuda.empty_cache()
    head = "| model | params | device | perturb / member (s) | ES+AWD step, N = {} (s) | step / member (s) | members/min (math only) |"
    print(f"\n{name}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print(head.format(2 * args.pairs))
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['params'] / 1e6:.0f}M | {r['device']} | {r['perturb_s']:.4f} | "
            f"{r['step_s']:.3f} | {r['step_per_member_s']:.4f} | {r['members_per_min_math_only']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device_name": name,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "rows": rows,
                "command": " ".join(["bench/es_math.py", *sys.argv[1:]]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
