"""Does bf16 answer like float32 on this CPU, and at what speed? vLLM compiled vs eager.

    .venv/bin/python bench/bf16_cpu.py [--configs float32:compile,bfloat16:compile,bfloat16:eager]
                                       [--repeats 5] [--prompts 16] [--tokens 16]

For each configuration (dtype, and whether vLLM runs its torch.compile'd graph or eager
PyTorch), one ``vllm.LLM`` on the bundled model (as the tests prepare it), in a child process
of its own so the engines never share the CPU:

1. greedy replies (16 tokens) to a few fixed chat prompts, compared with the first
   configuration's: how many differ;
2. speed: ``--prompts`` addition prompts x exactly ``--tokens`` greedy tokens (EOS ignored), the
   median of ``--repeats`` batches, and its ratio to the first configuration's.

The project serves float32 on CPU because compiled bf16 gave wrong greedy answers with the
bundled model ("What is the capital of France?" -> "L'Étoile, ..."); transformers in bf16 and
vLLM bf16 with ``enforce_eager`` answered as float32 did. This bench keeps that check and the
cost of the eager workaround side by side. Thread binding: both cores
(``VLLM_CPU_OMP_THREADS_BIND=0-<n-1>``, none reserved), as the learner engine uses them.
Writes ``bench/results/bf16_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bf16_cpu.json"
CHECK_PROMPTS = (
    "What is the capital of France?",
    "What is 12 + 7?",
    "Name a primary color.",
    "Write the word cat in capital letters.",
    "Is the sun a star? Answer yes or no.",
)


def child(dtype: str, mode: str, repeats: int, prompts: int, tokens: int) -> dict:
    """One configuration, in this (child) process."""
    from vllm import LLM, SamplingParams

    sys.path.insert(0, str(REPO))
    from harness.processes import shared_model_dir

    started = time.perf_counter()
    llm = LLM(
        model=str(shared_model_dir()),
        dtype=dtype,
        enforce_eager=mode == "eager",
        max_model_len=512,
        seed=0,
    )
    start_s = time.perf_counter() - started
    greedy = SamplingParams(temperature=0, max_tokens=16)
    replies = [
        o.outputs[0].text
        for o in llm.chat([[{"role": "user", "content": p}] for p in CHECK_PROMPTS], greedy, use_tqdm=False)
    ]
    batch = [[{"role": "user", "content": f"What is {a} + {a + 7}?"}] for a in range(prompts)]
    exact = SamplingParams(temperature=0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)
    llm.chat(batch, exact, use_tqdm=False)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        llm.chat(batch, exact, use_tqdm=False)
        times.append(time.perf_counter() - t0)
    return {
        "dtype": dtype,
        "mode": mode,
        "start_s": round(start_s, 1),
        "replies": replies,
        "batch_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
    }


def run_child(cmd: list[str], what: str) -> dict:
    """Run a bench's ``--child`` (an offline vLLM engine on every core, none reserved) and return
    the JSON of its ``RESULT`` line."""
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="float32:compile,bfloat16:compile,bfloat16:eager")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        dtype, mode = args.child.split(":")
        print("RESULT " + json.dumps(child(dtype, mode, args.repeats, args.prompts, args.tokens)), flush=True)
        return
    cores = os.cpu_count() or 1
    rows = []
    for config in args.configs.split(","):
        print(f"{config}: starting an engine ...", flush=True)
        cmd = [sys.executable, __file__, "--child", config, "--repeats", str(args.repeats)]
        cmd += ["--prompts", str(args.prompts), "--tokens", str(args.tokens)]
        rows.append(run_child(cmd, config))
        print(f"{config}: median {rows[-1]['median_s']:.3f} s per batch", flush=True)
    first = rows[0]
    print(f"\n{args.prompts} prompts x {args.tokens} greedy tokens, median of {args.repeats}; {cores} cores")
    print(f"{'config':<20} {'s per batch':>11} {'speed vs first':>14} {'replies differing':>17}")
    for r in rows:
        differ = sum(a != b for a, b in zip(r["replies"], first["replies"], strict=True))
        r["speedup"] = round(first["median_s"] / r["median_s"], 2)
        r["replies_differing"] = differ
        print(
            f"{r['dtype'] + ':' + r['mode']:<20} {r['median_s']:>11.3f} {r['speedup']:>13.2f}x "
            f"{differ:>10} of {len(CHECK_PROMPTS)}"
        )
    for r in rows:
        print(f"  {r['dtype']}:{r['mode']} -> {r['replies'][0]!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"cores": cores, "command": " ".join(["bench/bf16_cpu.py", *sys.argv[1:]]), "results": rows}
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
