"""What one population member costs at least on this CPU: the evaluation's prefill and decode
against the machine's matrix-multiply rate, with no server, no weight load and no update.

    .venv/bin/python bench/member_floor.py [--dtype bfloat16] [--repeats 5] [--prompts 16]
                                           [--out bench/results/member_floor.json]

A member of the default round is scored on 16 addition prompts (47 tokens each with the chat
template: the system prompt alone is 27 of them), greedy, up to 16 tokens, stopping at EOS.
This bench runs exactly that batch through an offline ``vllm.LLM`` (the learner engine's dtype
and eager mode on a CPU with native bf16, both cores, nothing reserved), in a child process:

* ``prefill``: the 16 prompts and one generated token;
* ``16 tokens``: 16 greedy tokens each, EOS ignored (every member's worst case);
* ``at EOS``: as the round scores them (the batch runs until its longest reply ends);
* ``reference likelihood``: each prompt with its reference answer as the assistant's turn, one
  forward pass with ``prompt_logprobs`` (a ``reference`` fitness member: no decoding);

and, in this process, ``torch.nn.functional.linear`` on the model's layer shapes at the prefill
batch (752 rows): the rate the CPU multiplies matrices at in that dtype, and from it the
prefill's floor (2 x non-embedding parameters x prompt tokens). Medians of ``--repeats``. The
table says how far the round's measured evaluation (``bench/round_time.py``) is above what the
engine alone does, and how far that is above the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "member_floor.json"
sys.path.insert(0, str(REPO))

from bench.bf16_cpu import run_child  # noqa: E402


def _prompts(model_dir: str, n: int, *, with_reference: bool = False) -> list[list[int]]:
    """The default round's member prompts; ``with_reference``: each with its reference answer as
    the assistant's turn (what a reference-likelihood member scores in one forward pass)."""
    from transformers import AutoTokenizer

    from learner.items import load_items

    tok = AutoTokenizer.from_pretrained(model_dir)
    items = load_items(REPO / "evals" / "tasks" / "addition" / "train.jsonl").verifiable[:n]
    if with_reference:
        chats = [[*i.messages, {"role": "assistant", "content": i.reference}] for i in items]
        return [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in chats]
    return [
        tok.apply_chat_template(
            list(i.messages), add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for i in items
    ]


def child(dtype: str, repeats: int, n: int) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from harness.processes import shared_model_dir

    model_dir = str(shared_model_dir())
    ids = _prompts(model_dir, n)
    llm = LLM(model=model_dir, dtype=dtype, enforce_eager=True, max_model_len=2048, seed=0)
    prompts = [TokensPrompt(prompt_token_ids=x) for x in ids]
    with_reference = [TokensPrompt(prompt_token_ids=x) for x in _prompts(model_dir, n, with_reference=True)]
    cases = {
        "prefill": (prompts, SamplingParams(temperature=0, max_tokens=1)),
        "16 tokens": (prompts, SamplingParams(temperature=0, max_tokens=16, min_tokens=16, ignore_eos=True)),
        "at EOS": (prompts, SamplingParams(temperature=0, max_tokens=16)),
        # the reference-likelihood member: prompt + reference, every position's log-probability
        "reference likelihood": (
            with_reference,
            SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0),
        ),
    }
    out: dict = {"prompt_tokens": sum(len(x) for x in ids), "cases": {}}
    for name, (prompts, params) in cases.items():
        llm.generate(prompts, params, use_tqdm=False)  # warm-up
        times, tokens = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            got = llm.generate(prompts, params, use_tqdm=False)
            times.append(time.perf_counter() - t0)
            tokens = sum(len(o.outputs[0].token_ids) for o in got)
        out["cases"][name] = {"median_s": round(statistics.median(times), 4), "generated_tokens": tokens}
    return out


def matmul_rate(dtype: str, rows: int, repeats: int) -> dict:
    """GFLOP/s of F.linear at the bundled model's layer shapes (SmolLM2-135M: hidden 576, MLP 1536)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    kind = getattr(torch, dtype)
    rates = {}
    for k, n in ((576, 1536), (1536, 576), (576, 576)):
        x, w = torch.randn(rows, k, dtype=kind), torch.randn(n, k, dtype=kind)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                torch.nn.functional.linear(x, w)
            times.append((time.perf_counter() - t0) / 10)
        rates[f"{k}x{n}"] = round(2 * rows * k * n / statistics.median(times) / 1e9, 1)
    return rates


def _body_params() -> int:
    """Weights every prompt token is multiplied by: q, k, v, o and the MLP of every layer."""
    from harness.processes import shared_model_dir

    c = json.loads((shared_model_dir() / "config.json").read_text())
    h, kv = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    return c["num_hidden_layers"] * (h * (h + 2 * kv) + h * h + 3 * h * c["intermediate_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.dtype, args.repeats, args.prompts)), flush=True)
        return
    cores = os.cpu_count() or 1
    print(f"engine ({args.dtype}, eager, {cores} cores): starting ...", flush=True)
    cmd = [sys.executable, __file__, "--child", "--dtype", args.dtype, "--repeats", str(args.repeats)]
    engine = run_child([*cmd, "--prompts", str(args.prompts)], "the engine")
    tokens = engine["prompt_tokens"]
    rates = matmul_rate(args.dtype, tokens, args.repeats)
    rate = statistics.median(rates.values())
    body_params = _body_params()
    floor = 2 * body_params * tokens / (rate * 1e9)
    prefill = engine["cases"]["prefill"]["median_s"]
    print(
        f"\n{args.prompts} addition prompts, {tokens} prompt tokens; median of {args.repeats}; {args.dtype}"
    )
    print("| step | s | generated tokens | note |")
    print("|---|---|---|---|")
    print(f"| matrix products at the prefill's shapes | {floor:.3f} | - | {rate:.0f} GFLOP/s ({rates}) |")
    notes = {
        "prefill": f"{prefill / floor:.2f}x the products' floor",
        "16 tokens": f"{1000 * (engine['cases']['16 tokens']['median_s'] - prefill) / 15:.0f} ms per decode step",
        "at EOS": f"{engine['cases']['at EOS']['generated_tokens'] / args.prompts:.1f} tokens per reply on average",
        "reference likelihood": "prompt + reference, prompt_logprobs: "
        f"{engine['cases']['reference likelihood']['median_s'] / engine['cases']['at EOS']['median_s']:.2f}x "
        "the decoding member (at EOS)",
    }
    for name, case in engine["cases"].items():
        print(f"| {name} | {case['median_s']:.3f} | {case['generated_tokens']} | {notes[name]} |")
    result = {
        "cores": cores,
        "dtype": args.dtype,
        "command": " ".join(["bench/member_floor.py", *sys.argv[1:]]),
        "engine": engine,
        "matmul_gflops": rates,
        "prefill_floor_s": round(floor, 4),
        "body_params": body_params,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
