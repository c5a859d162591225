"""Regenerate the shipped addition task (two-digit addition, answer = the reply's last number).

    .venv/bin/python -m evals.tasks.make_addition

Writes ``evals/tasks/addition/{train,heldout}.jsonl`` deterministically (seed 2026): a and b
in 10..99, disjoint train/held-out pairs, and none of the two-digit additions of the prior
arithmetic suite (so the prior score is not trained on directly). The base SmolLM2-135M-Instruct scores about
22% held-out on this task (``bench/learning.py``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent / "addition"
SUITE = Path(__file__).parents[1] / "suites" / "data" / "arithmetic.v1.jsonl"
PROMPT = "What is {a} + {b}? Reply with only the number."
SEED, N_TRAIN, N_HELDOUT = 2026, 200, 100


def _excluded() -> set[tuple[int, int]]:
    if not SUITE.is_file():
        return set()
    pairs = re.findall(r"What is (\d+) \+ (\d+)\?", SUITE.read_text())
    return {(int(a), int(b)) for a, b in pairs} | {(int(b), int(a)) for a, b in pairs}


def item(a: int, b: int, prefix: str, index: int) -> dict:
    return {
        "id": f"{prefix}-{index:03d}",
        "prompt": PROMPT.format(a=a, b=b),
        "reference": str(a + b),
        "verifier": "number",
    }


def main() -> None:
    rng = random.Random(SEED)
    taken = _excluded()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < N_TRAIN + N_HELDOUT:
        pair = (rng.randint(10, 99), rng.randint(10, 99))
        if pair not in taken:
            taken.add(pair)
            pairs.append(pair)
    HERE.mkdir(parents=True, exist_ok=True)
    for name, chunk in (("train", pairs[:N_TRAIN]), ("heldout", pairs[N_TRAIN:])):
        lines = [json.dumps(item(a, b, name, i)) for i, (a, b) in enumerate(chunk)]
        (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
