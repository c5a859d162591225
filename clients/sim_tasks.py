"""What simulated users ask, and how they judge the reply (their hidden preference or verifier).

A task hands out ``Ask``s (a chat, and what the user knows about the right answer) and judges a
reply in [0, 1]. Three kinds:

* ``ReferenceTask``: items with a reference answer and a verifier (from a JSONL file, as in
  ``evals/tasks/addition/train.jsonl``); the user knows the answer.
* ``addition``: generated two-digit additions ("What is 37 + 48? Reply with only the number.").
* ``StyleTask``: open prompts and a hidden style preference the user never states, e.g.
  ``concise`` (replies of at most 25 words); only thumbs can express it.

The local judge mirrors the server's verifiers for ``exact``, ``contains``, ``number`` and
``regex`` (clients talk to the server over HTTP only, so they cannot import it); other verifier
types are sent as feedback but not judged here (``judge`` returns None).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}
ADDITION_PROMPT = "What is {a} + {b}? Reply with only the number."


class TaskError(ValueError):
    """A task name, file or item is invalid."""


@dataclass(frozen=True)
class Ask:
    """One request of a simulated user and what the user knows about the right reply."""

    messages: tuple[dict[str, str], ...]
    task: str
    reference: str | None = None
    verifier: str | dict[str, Any] | None = None


class Task(Protocol):
    name: str
    verifiable: bool  # True: the user can send a reference answer + verifier

    def asks(self, rng: random.Random, n: int) -> list[Ask]: ...

    def judge(self, ask: Ask, reply: str) -> float | None: ...


def _numbers(text: str) -> list[float]:
    out = []
    for token in _NUMBER.findall(text):
        try:
            out.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return out


def verify(reply: str, reference: str | None, verifier: str | dict[str, Any] | None) -> float | None:
    """Score ``reply`` like the server's verifier of the same name; None for unsupported types.

    >>> verify("12 + 30 = 42", "42", "number"), verify("42 or 41", "41", "number")
    (1.0, 0.2)
    """
    spec = {"type": verifier} if isinstance(verifier, str) else dict(verifier or {"type": "exact"})
    kind, reply, ref = spec.get("type"), reply or "", (reference or "").strip()
    if kind in ("exact", "contains"):
        a, b = (
            (reply.strip(), ref) if spec.get("case_sensitive") else (reply.strip().casefold(), ref.casefold())
        )
        return float(a == b) if kind == "exact" else float(b in a)
    if kind == "number":
        target, found = _numbers(ref), _numbers(reply)
        if len(target) != 1 or not found:
            return 0.0
        tol = float(spec.get("tolerance", 1e-6))
        if abs(found[-1] - target[0]) <= tol:
            return 1.0
        return float(spec.get("partial", 0.2)) if any(abs(n - target[0]) <= tol for n in found) else 0.0
    if kind == "regex":
        flags = 0
        for ch in spec.get("flags", ""):
            flags |= _FLAGS.get(ch, 0)
        return float(re.search(spec.get("pattern", ref), reply, flags) is not None)
    return None


def _cycle(rng: random.Random, pool: Sequence[Ask], n: int) -> list[Ask]:
    """``n`` asks: the pool in a seeded order, every item once before any repeats."""
    out: list[Ask] = []
    while len(out) < n:
        order = list(pool)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


@dataclass
class ReferenceTask:
    """Items with reference answers; the simulated user knows each answer."""

    name: str
    items: list[Ask]
    verifiable: bool = True

    def asks(self, rng: random.Random, n: int) -> list[Ask]:
        return _cycle(rng, self.items, n)

    def judge(self, ask: Ask, reply: str) -> float | None:
        return verify(reply, ask.reference, ask.verifier)


@dataclass
class AdditionTask:
    """Generated additions ``a + b`` with a, b in ``low..high``; the ``number`` verifier judges."""

    name: str = "addition"
    low: int = 10
    high: int = 99
    verifiable: bool = True

    def asks(self, rng: random.Random, n: int) -> list[Ask]:
        out = []
        for _ in range(n):
            a, b = rng.randint(self.low, self.high), rng.randint(self.low, self.high)
            messages = ({"role": "user", "content": ADDITION_PROMPT.format(a=a, b=b)},)
            out.append(Ask(messages, self.name, str(a + b), "number"))
        return out

    def judge(self, ask: Ask, reply: str) -> float | None:
        return verify(reply, ask.reference, ask.verifier)


@dataclass
class StyleTask:
    """Open prompts and a hidden style preference (a predicate on the reply)."""

    name: str
    prompts: Sequence[str]
    prefers: Callable[[str], bool]
    verifiable: bool = False

    def asks(self, rng: random.Random, n: int) -> list[Ask]:
        pool = [Ask(({"role": "user", "content": p},), self.name) for p in self.prompts]
        return _cycle(rng, pool, n)

    def judge(self, ask: Ask, reply: str) -> float | None:
        return float(self.prefers(reply or ""))


OPEN_PROMPTS = (
    "Tell me about the moon.",
    "Why is the sky blue?",
    "What is a good breakfast?",
    "How do plants grow?",
    "Describe a cat.",
    "What is rain?",
    "Why do we sleep?",
    "What is the ocean like?",
    "How does a bicycle work?",
    "What is music?",
    "Tell me about dogs.",
    "What makes a good friend?",
    "How do birds fly?",
    "What is winter like?",
    "Why do leaves change color?",
    "What is a computer?",
    "Describe the sun.",
    "How do bees make honey?",
    "What is a library?",
    "Why is exercise good?",
)


def _concise(reply: str) -> bool:
    return 0 < len(reply.split()) <= 25


def _enthusiastic(reply: str) -> bool:
    return "!" in reply


STYLES: dict[str, Callable[[str], bool]] = {"concise": _concise, "enthusiastic": _enthusiastic}


def load_items(path: Path, name: str | None = None) -> ReferenceTask:
    """A ``ReferenceTask`` from JSONL lines ``{"prompt" | "messages", "reference", "verifier"?}``.

    Args:
        path: the JSONL file (blank lines ignored; a ``{"suite": ...}`` header line is skipped).
        name: the task tag sent with feedback (default: each item's ``task``, else the file stem).
    Returns:
        The task. Raises TaskError on a line without a prompt or a reference.
    """
    items = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "suite" in row:
            continue
        messages = row.get("messages") or (
            [{"role": "user", "content": row["prompt"]}] if row.get("prompt") else None
        )
        if not messages or row.get("reference") is None:
            raise TaskError(f"{path}:{number}: an item needs 'prompt' (or 'messages') and 'reference'")
        task = name or row.get("task") or Path(path).stem
        items.append(Ask(tuple(messages), task, str(row["reference"]), row.get("verifier") or "exact"))
    if not items:
        raise TaskError(f"{path}: no items")
    return ReferenceTask(name or Path(path).stem, items)


def builtin_task(name: str) -> Task:
    """``addition``, or a style preference (``concise``, ``enthusiastic``) on open prompts."""
    if name == "addition":
        return AdditionTask()
    if name in STYLES:
        return StyleTask(name, OPEN_PROMPTS, STYLES[name])
    raise TaskError(f"unknown task {name!r}; one of {['addition', *STYLES]} (or give an items file)")
