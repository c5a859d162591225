"""Regenerate the shipped addition task (two-digit addition, answer = the reply's last number).

    .venv/bin/python -m evals.tasks.make_addition

Writes ``evals/tasks/addition/{train,heldout}.jsonl`` deterministically (seed 2026): a and b
in 10..99, disjoint train/held-out pairs, and none of the two-digit additions of the prior
arithmetic suite (so the prior score is not trained on directly). The v2 suite has no such
additions; the v1 suite's (deleted with v1) stay excluded in ``V1_SUITE_PAIRS``, so this script
still writes the shipped files byte for byte. The base SmolLM2-135M-Instruct scores about
22% held-out on this task (``bench/learning.py``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent / "addition"
SUITE = Path(__file__).parents[1] / "suites" / "data" / "arithmetic.v3.jsonl"
# the "What is a + b?" items of the deleted arithmetic.v1.jsonl, which shaped the shipped draw
V1_SUITE_PAIRS = (
    (2, 3), (4, 5), (6, 1), (3, 3), (7, 2), (8, 1), (5, 4), (9, 0), (1, 6), (2, 2),
    (12, 7), (23, 15), (31, 44), (18, 21), (40, 35), (56, 12), (27, 30), (65, 24), (19, 19), (50, 50),
)  # fmt: skip
PROMPT = "What is {a} + {b}? Reply with only the number."
SEED, N_TRAIN, N_HELDOUT = 2026, 200, 100


def _excluded() -> set[tuple[int, int]]:
    text = SUITE.read_text() if SUITE.is_file() else ""
    found = [(int(a), int(b)) for a, b in re.findall(r"What is (\d+) \+ (\d+)\?", text)]
    pairs = set(V1_SUITE_PAIRS) | set(found)
    return pairs | {(b, a) for a, b in pairs}


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
