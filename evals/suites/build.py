"""Generate the shipped prior-capability suites (v2; arithmetic v3), deterministically.

    .venv/bin/python -m evals.suites.build              # rewrites evals/suites/data/<name>.v<N>.jsonl
    .venv/bin/python -m evals.suites.build --out DIR    # elsewhere (the tests compare the bytes)

Why generated: a gate must tell a 5-point loss from noise, which takes hundreds of items per
suite (the standard error of a score near 0.5 over n items is 0.5 / sqrt(n): 0.08 at 36 items,
0.025 at 400), and hundreds of hand-written items drift from their answers. Here every answer
is computed or looked up in a curated table (:mod:`evals.suites.facts`, :mod:`evals.suites.words`,
:mod:`evals.suites.passages`); nothing is downloaded and no model is asked.

Deterministic: each suite has its own seeded ``random.Random`` and draws only from sequences in
a fixed order (never from a set, whose order of strings changes between runs), so the same code
writes the same bytes, which ``tests/unit/test_suite_data.py`` checks. Items are shuffled once
at the end so that any prefix (``gate_suite_max_items``) mixes all item kinds.

Items aim at easy-to-medium for SmolLM2-135M-Instruct: a suite the base model scores near 0 or
near 1 on cannot show a loss. None overlaps the learner's addition task (``evals/tasks/addition``):
no prompt has the "What is a + b?" form and every addition here has an operand below 10.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.suites import facts, passages, words
from evals.suites.registry import BUILTIN_DIR, Suite, parse_suite_jsonl

VERSION = 2
MIN_ITEMS = 400
Row = dict[str, Any]


class Positions:
    """Where each item's correct choice goes: a shuffled round of all positions, then the next.

    Every position is used equally often (to within one round), so a model that always picks
    the first (or the last) option scores at chance, not above it.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.pending: dict[int, list[int]] = {}

    def next(self, n: int) -> int:
        pending = self.pending.setdefault(n, [])
        if not pending:
            pending.extend(range(n))
            self.rng.shuffle(pending)
        return pending.pop()


class Chooser:
    """Builds likelihood items: the correct choice among wrong ones, at a balanced position."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.positions = Positions(rng)

    def choices(
        self,
        correct: str,
        pool: Sequence[str],
        n: int = 4,
        fixed: Sequence[str] = (),
        avoid: Sequence[str] = (),
    ) -> tuple[list[str], int]:
        """``correct`` and ``n - 1`` wrong choices: ``fixed`` ones first, the rest drawn from ``pool``.

        Args:
            correct: the right answer.
            pool: where wrong choices are drawn from (``correct`` and ``avoid`` are skipped).
            n: how many choices in all.
            fixed: wrong choices that must be among them (e.g. the passage's other person).
            avoid: values never to draw from ``pool`` (e.g. the question's own key word).
        Returns:
            (choices, index of the correct one).
        """
        taken = {correct.casefold()}
        wrong = []
        for choice in fixed:
            if choice.casefold() not in taken:
                taken.add(choice.casefold())
                wrong.append(choice)
        taken |= {a.casefold() for a in avoid}
        rest = [p for p in dict.fromkeys(pool) if p.casefold() not in taken]
        wrong += self.rng.sample(rest, n - 1 - len(wrong))
        self.rng.shuffle(wrong)
        at = self.positions.next(n)
        return wrong[:at] + [correct] + wrong[at:], at


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def mc_row(question: str, choices: list[str], answer: int, tags: list[str], suffix: str = "") -> Row:
    """A likelihood item whose prompt lists the options in the order of ``choices``."""
    if any(", " in c for c in choices):
        raise ValueError(f"a choice with ', ' would blur the options list: {choices}")
    tail = f" {suffix}" if suffix else ""
    prompt = f"{question}{tail} Options: {', '.join(choices)}."
    return {"messages": _messages(prompt), "choices": choices, "answer": answer, "tags": tags}


def greedy_row(
    prompt: str, reference: str, verifier: str | dict[str, Any], max_tokens: int, tags: list[str]
) -> Row:
    return {
        "messages": _messages(prompt),
        "reference": reference,
        "verifier": verifier,
        "max_tokens": max_tokens,
        "tags": tags,
    }


# --- factual_qa (likelihood) -----------------------------------------------------------------


def build_factual_qa(rng: random.Random) -> list[Row]:
    """Capitals (both ways), continents, chemical symbols, planets, currencies, languages."""
    pick = Chooser(rng)
    rows: list[Row] = []
    capitals = list(facts.CAPITALS.values())
    by_continent: dict[str, list[str]] = {}
    for _country, capital, continent in facts.COUNTRIES:
        if continent:
            by_continent.setdefault(continent, []).append(capital)
    stems = (
        "What is the capital of {}?",
        "Which city is the capital of {}?",
        "What is the capital city of {}?",
    )
    for i, (country, capital, continent) in enumerate(facts.COUNTRIES):
        # every other item: wrong choices from the same continent (harder), else from anywhere
        near = by_continent.get(continent or "", [])
        pool = near if i % 2 == 0 and len(near) > 4 else capitals
        choices, answer = pick.choices(capital, pool)
        question = stems[i % len(stems)].format(facts.country_phrase(country))
        rows.append(
            mc_row(question, choices, answer, ["capital", country], "Answer with the city name only.")
        )
    countries = list(facts.CAPITALS)
    for country in rng.sample(countries, 80):
        capital = facts.CAPITALS[country]
        choices, answer = pick.choices(country, countries)
        question = f"{capital} is the capital of which country?"
        rows.append(
            mc_row(question, choices, answer, ["capital_of", capital], "Answer with the country name only.")
        )
    continents = sorted(set(facts.CONTINENTS.values()))
    stems = ("On which continent is {}?", "Which continent is {} in?")
    for i, (country, continent) in enumerate(facts.CONTINENTS.items()):
        choices, answer = pick.choices(continent, continents)
        question = stems[i % len(stems)].format(facts.country_phrase(country))
        rows.append(
            mc_row(question, choices, answer, ["continent", country], "Answer with the continent name only.")
        )
    symbols = [symbol for _, symbol, _ in facts.ELEMENTS]
    names = [name.capitalize() for name, _, _ in facts.ELEMENTS]
    for name, symbol, number in facts.ELEMENTS:
        choices, answer = pick.choices(symbol, symbols)
        question = f"What is the chemical symbol for {name}?"
        rows.append(mc_row(question, choices, answer, ["symbol", name], "Answer with the symbol only."))
        choices, answer = pick.choices(name.capitalize(), names)
        question = f"Which chemical element has the symbol {symbol}?"
        rows.append(
            mc_row(question, choices, answer, ["element", symbol], "Answer with the element name only.")
        )
        if number <= facts.ATOMIC_NUMBER_MAX:
            numbers = [str(k) for k in range(1, facts.ATOMIC_NUMBER_MAX + 1)]
            choices, answer = pick.choices(str(number), numbers)
            question = f"What is the atomic number of {name}?"
            rows.append(
                mc_row(question, choices, answer, ["atomic_number", name], "Answer with the number only.")
            )
    planets = list(facts.PLANETS)
    for ordinal, planet in zip(facts.ORDINALS, facts.PLANETS, strict=True):
        choices, answer = pick.choices(planet, planets)
        question = f"Which planet is the {ordinal} planet from the Sun?"
        rows.append(
            mc_row(question, choices, answer, ["planet_order", ordinal], "Answer with the planet name only.")
        )
    for key, (question, planet) in facts.PLANET_FACTS.items():
        choices, answer = pick.choices(planet, planets)
        rows.append(mc_row(question, choices, answer, ["planet", key], "Answer with the planet name only."))
    currencies = sorted(set(facts.CURRENCIES.values()))
    stems = ("What is the currency of {}?", "What currency is used in {}?")
    for i, (country, currency) in enumerate(facts.CURRENCIES.items()):
        choices, answer = pick.choices(currency, currencies)
        question = stems[i % len(stems)].format(facts.country_phrase(country))
        rows.append(
            mc_row(question, choices, answer, ["currency", country], "Answer with the currency name only.")
        )
    languages = sorted(set(facts.LANGUAGES.values()))
    stems = ("What is the main language spoken in {}?", "Which language do most people in {} speak?")
    for i, (country, language) in enumerate(facts.LANGUAGES.items()):
        choices, answer = pick.choices(language, languages)
        question = stems[i % len(stems)].format(facts.country_phrase(country))
        rows.append(
            mc_row(question, choices, answer, ["language", country], "Answer with the language name only.")
        )
    return rows


# --- word_knowledge (likelihood) -------------------------------------------------------------


def build_word_knowledge(rng: random.Random) -> list[Row]:
    """Antonyms, opposite directions, synonyms, plurals, past tenses, animals, categories."""
    pick = Chooser(rng)
    rows: list[Row] = []
    antonyms = list(words.ANTONYMS)
    for word, opposite in words.ANTONYMS.items():
        choices, answer = pick.choices(opposite, antonyms, avoid=[word])
        question = f"What is the opposite of the word '{word}'?"
        rows.append(mc_row(question, choices, answer, ["antonym", word], "Answer with one word."))
    compass = [w for pair in words.COMPASS_PAIRS for w in pair]
    directions = list(words.OPPOSITE_DIRECTIONS)
    for word, opposite in words.OPPOSITE_DIRECTIONS.items():
        pool = compass if word in compass else directions
        choices, answer = pick.choices(opposite, pool, avoid=[word])
        question = f"What is the opposite direction of '{word}'?"
        rows.append(mc_row(question, choices, answer, ["opposite_direction", word], "Answer with one word."))
    for word, opposite in words.LOOKUP["turn_around"].items():
        choices, answer = pick.choices(opposite, compass, avoid=[word])
        question = f"You are facing {word}. You turn around to face the other way. Which direction are you facing now?"
        rows.append(
            mc_row(question, choices, answer, ["turn_around", word], "Answer with the direction only.")
        )
    synonyms = list(words.SYNONYMS)
    for word, same in words.SYNONYMS.items():
        choices, answer = pick.choices(same, synonyms, avoid=[word])
        question = f"Which word means the same as '{word}'?"
        rows.append(mc_row(question, choices, answer, ["synonym", word], "Answer with one word."))
    for word, (plural, wrong) in words.PLURALS.items():
        choices, answer = pick.choices(plural, (), fixed=wrong)
        question = f"What is the plural of '{word}'? (one {word}, two ...)"
        rows.append(mc_row(question, choices, answer, ["plural", word], "Answer with one word."))
    for verb, (past, wrong) in words.PAST_TENSES.items():
        choices, answer = pick.choices(past, (), fixed=wrong)
        question = f"What is the simple past tense of '{verb}'? (Today I {verb}; yesterday I ...)"
        rows.append(mc_row(question, choices, answer, ["past_tense", verb], "Answer with one word."))
    young = sorted(set(words.YOUNG.values()))
    for animal, baby in words.YOUNG.items():
        choices, answer = pick.choices(baby, young)
        question = f"What is a baby {animal} called?"
        rows.append(mc_row(question, choices, answer, ["young", animal], "Answer with one word."))
    sounds = list(words.SOUNDS.values())
    for animal, sound in words.SOUNDS.items():
        choices, answer = pick.choices(sound, sounds)
        question = f"What sound does a {animal} make?"
        rows.append(mc_row(question, choices, answer, ["sound", animal], "Answer with one word."))
    names = list(words.CATEGORIES)
    for category, (phrase, members) in words.CATEGORIES.items():
        others = [c for c in names if c != category]
        outsiders = [m for c in others for m in words.CATEGORIES[c][1]]
        for member in rng.sample(members, 4):
            # one wrong choice from each of three other categories
            wrong = [rng.choice(words.CATEGORIES[c][1]) for c in rng.sample(others, 3)]
            choices, answer = pick.choices(member, (), fixed=wrong)
            tags = ["category", category, member]
            rows.append(
                mc_row(f"Which of these is {phrase}?", choices, answer, tags, "Answer with one word.")
            )
        for member in rng.sample(members, 3):
            choices, answer = pick.choices(category, names)
            question = f"Which group does the word '{member}' belong to?"
            rows.append(
                mc_row(question, choices, answer, ["category_of", member], "Answer with the group name only.")
            )
        for outsider in rng.sample(outsiders, 3):
            choices, answer = pick.choices(outsider, (), fixed=rng.sample(members, 3))
            tags = ["not_category", category, outsider]
            rows.append(
                mc_row(f"Which of these is not {phrase}?", choices, answer, tags, "Answer with one word.")
            )
    return rows


# --- reading (likelihood) --------------------------------------------------------------------

READING_PASSAGES = 150
READING_QUESTIONS = 3  # per passage


def build_reading(rng: random.Random) -> list[Row]:
    """Questions on generated passages; wrong choices of the same kind, some from the passage.

    A wrong choice from the passage is always one of the question's ``others`` (the other
    person, the other town): a value that the passage uses in another role ("orange" the fruit
    on a question about colors, "Daisy" the person on a question about pet names) is not
    offered, so the passage never seems to support a wrong choice.
    """
    pick = Chooser(rng)
    rows: list[Row] = []
    for index in range(READING_PASSAGES):
        text = passages.passage(rng, index)
        for q in rng.sample(text.questions, READING_QUESTIONS):
            n = 3 if q.kind == "name" else 4
            pool = passages.KINDS[q.kind]
            mentioned = [v for v in pool if re.search(rf"\b{re.escape(v)}\b", text.text)]
            choices, answer = pick.choices(q.answer, pool, n=n, fixed=q.others, avoid=mentioned)
            prompt = (
                "Read the passage and answer the question.\n\n"
                f"Passage: {text.text}\n\n"
                f"Question: {q.text}\n"
                f"Options: {', '.join(choices)}.\n"
                "Answer with one of the options only."
            )
            tags = ["reading", text.template, q.kind]
            rows.append({"messages": _messages(prompt), "choices": choices, "answer": answer, "tags": tags})
    return rows


# --- arithmetic (likelihood, v3) -------------------------------------------------------------
# v2 scored these greedily; a 200-item greedy cut then rejected two of three noise-only
# candidates (RMS 2e-3) on arithmetic while the 239 items past the cut moved +2.0 and -1.3
# points: greedy answers flip both ways under noise. The probability of the right number among
# four near misses moves a little instead (bench/gate_power.py).

ONLY_NUMBER = " Reply with only the number."


def near_misses(answer: int, first: Sequence[int] = ()) -> list[int]:
    """Three wrong numbers a model that almost knows would say: ``first`` (e.g. the other
    number of a comparison), then off by one, by ten, by two, digits swapped; all >= 0."""
    swapped = int(str(answer)[::-1]) if answer >= 10 else answer + 3
    pool = [*first, answer + 1, answer - 1, answer + 10, answer - 10, answer + 2, swapped, answer + 3]
    out: list[int] = []
    for n in pool:
        if n >= 0 and n != answer and n not in out:
            out.append(n)
    return out[:3]


def _number(prompt: str, answer: int, tag: str, first: Sequence[int] = ()) -> Row:
    """A likelihood item: the right number and three near misses, the right one at a position
    fixed by the prompt's text (so the positions spread and the file stays deterministic)."""
    wrong = near_misses(answer, first)
    at = sum(map(ord, prompt)) % 4
    choices = [str(n) for n in wrong[:at]] + [str(answer)] + [str(n) for n in wrong[at:]]
    return {"messages": _messages(prompt + ONLY_NUMBER), "choices": choices, "answer": at, "tags": [tag]}


def build_arithmetic(rng: random.Random) -> list[Row]:
    """Subtraction, multiplication, exact division, halves, doubles and squares, comparisons,
    neighbours and word problems. The only additions have an operand below 10 (the learner's
    task adds two numbers in 10..99)."""
    rows: list[Row] = []
    seen: set[str] = set()

    def add(count: int, make: Callable[[int], Row]) -> None:
        made = 0
        while made < count:
            row = make(made)
            prompt = row["messages"][0]["content"]
            if prompt not in seen:
                seen.add(prompt)
                rows.append(row)
                made += 1

    def subtraction(i: int) -> Row:
        a = rng.randint(10, 99)
        b = rng.randint(2, 9) if i % 3 == 0 else rng.randint(2, a - 1)
        stem = ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}.")[i % 3]
        return _number(stem.format(a=a, b=b), a - b, "subtraction")

    def multiplication(i: int) -> Row:
        a, b = (
            (rng.randint(11, 25), rng.randint(2, 5))
            if i % 4 == 3
            else (rng.randint(2, 12), rng.randint(2, 12))
        )
        stem = ("What is {a} times {b}?", "What is {a} * {b}?", "Multiply {a} by {b}.")[i % 3]
        return _number(stem.format(a=a, b=b), a * b, "multiplication")

    def division(i: int) -> Row:
        b, q = rng.randint(2, 10), rng.randint(2, 12)
        stem = ("What is {c} divided by {b}?", "What is {c} / {b}?", "Divide {c} by {b}.")[i % 3]
        return _number(stem.format(c=b * q, b=b), q, "division")

    def half(i: int) -> Row:
        n = 2 * rng.randint(2, 60)
        return _number(f"What is half of {n}?", n // 2, "half", [n * 2] if n < 10 else [n])

    def compare(i: int) -> Row:
        if i % 3 == 0:  # the same digits swapped: 37 or 73
            x, y = rng.sample(range(1, 10), 2)
            a, b = 10 * x + y, 10 * y + x
        else:
            a, b = rng.sample(range(10, 100), 2)
        if i % 2 == 0:
            return _number(f"Which is larger, {a} or {b}?", max(a, b), "larger", [min(a, b)])
        return _number(f"Which is smaller, {a} or {b}?", min(a, b), "smaller", [max(a, b)])

    def neighbour(i: int) -> Row:
        n = rng.randint(10, 99)
        if i % 2 == 0:
            return _number(f"What number comes right after {n}?", n + 1, "after", [n, n - 1])
        return _number(f"What number comes right before {n}?", n - 1, "before", [n, n + 1])

    def word_subtraction(i: int) -> Row:
        name, things = rng.choice(passages.NAMES), rng.choice(passages.THINGS)
        a = rng.randint(6, 30)
        b = rng.randint(1, a - 1)
        prompt = (
            f"{name} has {a} {things}. {name} gives {b} of them to a friend. "
            f"How many {things} does {name} have left?"
        )
        return _number(prompt, a - b, "word_subtraction")

    def word_multiplication(i: int) -> Row:
        things = rng.choice(passages.THINGS)
        box, boxes = rng.choice((("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("basket", "baskets")))
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        prompt = f"One {box} holds {a} {things}. How many {things} are in {b} {boxes}?"
        return _number(prompt, a * b, "word_multiplication")

    def word_division(i: int) -> Row:
        things = rng.choice(passages.THINGS)
        b, q = rng.randint(2, 9), rng.randint(2, 9)
        prompt = (
            f"{b * q} {things} are shared equally among {b} children. How many {things} does each child get?"
        )
        return _number(prompt, q, "word_division")

    def word_addition(i: int) -> Row:
        name, things = rng.choice(passages.NAMES), rng.choice(passages.THINGS)
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        prompt = f"{name} has {a} {things} and finds {b} more. How many {things} does {name} have now?"
        return _number(prompt, a + b, "word_addition")

    add(80, subtraction)
    add(80, multiplication)
    add(60, division)
    add(40, half)
    add(8, lambda i: _number(f"What is double {i + 2}?", 2 * (i + 2), "double"))
    add(11, lambda i: _number(f"What is {i + 2} squared?", (i + 2) ** 2, "square"))
    add(60, compare)
    add(20, neighbour)
    add(20, word_subtraction)
    add(20, word_multiplication)
    add(20, word_division)
    add(20, word_addition)
    return rows


# --- format_following (greedy) ---------------------------------------------------------------

# plain lowercase nouns for the instructions (letters only, so they need no regex escaping)
FORMAT_WORDS: tuple[str, ...] = (
    "apple", "river", "garden", "window", "pencil", "rabbit", "candle", "bottle", "ladder", "basket",
    "planet", "forest", "island", "pocket", "mirror", "button", "jacket", "rocket", "turtle", "kitten",
    "castle", "dragon", "violin", "bridge", "carpet", "cookie", "doctor", "engine", "flower", "guitar",
    "hammer", "lemon", "magnet", "monkey", "needle", "paper", "pillow", "puzzle", "ribbon", "spider",
    "sugar", "tiger", "tomato", "tunnel", "wallet", "winter", "zebra", "anchor", "banana", "camera",
    "desert", "meadow", "parrot", "pepper", "shadow", "ticket", "cloud", "horse", "chair", "music",
)  # fmt: skip
ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
TIMES = {2: "two", 3: "three", 4: "four"}


def number_words(n: int) -> str:
    """0..99 in lowercase English words, with a hyphen: ``forty-two``."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def _regex(pattern: str, case_insensitive: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "regex", "pattern": pattern}
    if case_insensitive:
        spec["flags"] = "i"
    return spec


def _json_const(value: Any) -> dict[str, Any]:
    """A json_schema verifier that accepts exactly ``value`` (an object: no extra keys)."""
    if isinstance(value, dict):
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {k: {"const": v} for k, v in value.items()},
            "required": list(value),
            "additionalProperties": False,
        }
    else:
        schema = {"const": value}
    return {"type": "json_schema", "schema": schema}


def build_format_following(rng: random.Random) -> list[Row]:
    """Instructions on the form of the reply, each checked exactly by its verifier.

    Case is checked (no ``i`` flag) only where the instruction asks for a case; ``\\W*`` at the
    ends lets a reply keep a final period or quotes but nothing else.
    """
    rows: list[Row] = []
    seen: set[str] = set()

    def add(prompt: str, reference: str, verifier: dict[str, Any], max_tokens: int, tag: str) -> None:
        if prompt in seen:
            raise ValueError(f"duplicate prompt {prompt!r}")
        seen.add(prompt)
        rows.append(greedy_row(prompt, reference, verifier, max_tokens, [tag]))

    vocabulary = list(FORMAT_WORDS)
    for w in rng.sample(vocabulary, 40):
        add(
            f"Reply with only the word {w} in capital letters.",
            w.upper(),
            _regex(rf"^\W*{w.upper()}\W*$", False),
            8,
            "caps",
        )
    for w in rng.sample(vocabulary, 30):
        prompt = f"Reply with only the word {w.upper()} in lowercase letters."
        add(prompt, w, _regex(rf"^\W*{w}\W*$", False), 8, "lower")
    # yes / no: half about numbers, half about categories; as many yes as no
    numbers = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100) if a != b], 30)
    for i, (a, b) in enumerate(numbers):
        a, b = (max(a, b), min(a, b)) if i % 2 == 0 else (min(a, b), max(a, b))
        answer = "yes" if a > b else "no"
        prompt = f"Answer with yes or no only: Is {a} larger than {b}?"
        add(prompt, answer, _regex(rf"^\W*{answer}\W*$"), 8, "yes_no")
    countable = [
        (member, category)
        for category, (_, members) in words.CATEGORIES.items()
        if category not in ("sport", "drink", "color", "vegetable", "fish")
        for member in members
        if member not in ("pliers", "jeans")
    ]
    categories = sorted({category for _, category in countable})
    for i, (member, category) in enumerate(rng.sample(countable, 30)):
        asked = category if i % 2 == 0 else rng.choice([c for c in categories if c != category])
        answer = "yes" if asked == category else "no"
        prompt = f"Answer with yes or no only: Is {passages.article(member)} {words.CATEGORIES[asked][0]}?"
        add(prompt, answer, _regex(rf"^\W*{answer}\W*$"), 8, "yes_no")
    for i, n in enumerate(rng.sample(range(2, 100), 30)):
        parity = ("an even", "an odd")[i % 2]
        answer = "true" if (n % 2 == 0) == (parity == "an even") else "false"
        prompt = f"Answer with true or false only: {n} is {parity} number."
        add(prompt, answer, _regex(rf"^\W*{answer}\W*$"), 8, "true_false")
    for i, w in enumerate(rng.sample(vocabulary, 40)):
        k = 2 + i % 3
        prompt = f"Write the word {w} {TIMES[k]} times, separated by commas, and nothing else."
        pattern = rf"^\W*{w}" + rf"(?:\s*,\s*{w})" + f"{{{k - 1}}}" + r"\W*$"
        add(prompt, ", ".join([w] * k), _regex(pattern), 24, "repeat")
    for name in rng.sample(passages.NAMES, 30):
        prompt = f'Reply with only a JSON object with the key "name" and the value "{name}".'
        add(prompt, json.dumps({"name": name}), _json_const({"name": name}), 24, "json_name")
    for town in rng.sample(passages.TOWNS, 20):
        year = rng.randint(1900, 2020)
        value = {"city": town, "year": year}
        prompt = (
            'Reply with only a JSON object with the keys "city" and "year", where "city" is '
            f'"{town}" and "year" is the number {year}.'
        )
        add(prompt, json.dumps(value), _json_const(value), 32, "json_pair")
    for a in rng.sample(range(1, 30), 15):
        b = a + rng.randint(2, 5)
        prompt = f"Reply with only a JSON list of the whole numbers from {a} to {b}, in order."
        value = list(range(a, b + 1))
        add(prompt, json.dumps(value), _json_const(value), 40, "json_list")
    for n in rng.sample(range(0, 100), 40):
        prompt = f"Reply with only the number {n} written out in lowercase words."
        pattern = r"^\W*" + number_words(n).replace("-", "[- ]") + r"\W*$"
        add(prompt, number_words(n), _regex(pattern, False), 12, "spell_out")
    for n in rng.sample(range(0, 100), 30):
        prompt = f"Reply with only the number {number_words(n)} written in digits."
        add(prompt, str(n), _regex(rf"^\W*{n}\W*$"), 8, "digits")
    for w in rng.sample(vocabulary, 25):
        prompt = f"Reply with only the first letter of the word {w}."
        add(prompt, w[0], _regex(rf"^\W*{w[0]}\W*$"), 8, "first_letter")
    animals = ("cat", "dog", "bird", "horse", "rabbit", "mouse", "duck", "goat")
    for w in rng.sample(vocabulary, 25):
        color, animal = rng.choice(passages.COLORS), rng.choice(animals)
        prompt = f"Reply with only the last word of this sentence: The {color} {animal} sat next to the {w}."
        add(prompt, w, _regex(rf"^\W*{w}\W*$"), 8, "last_word")
    trios: list[list[str]] = []
    while len(trios) < 25:
        trio = rng.sample(vocabulary, 3)
        if trio not in trios:
            trios.append(trio)
    for trio in trios:
        prompt = f"Reply with exactly these three words, in this order, separated by spaces: {' '.join(trio)}"
        add(prompt, " ".join(trio), _regex(r"^\W*" + r"\s+".join(trio) + r"\W*$"), 16, "exact_words")
    for w in rng.sample(vocabulary, 20):
        prompt = f"Reply with only the word {w} inside double quotation marks."
        add(prompt, f'"{w}"', _regex(rf'^\s*["“]{w}["”]\s*$'), 8, "quote")
    for w in rng.sample(vocabulary, 20):
        prompt = f"Reply with only the word {w} followed by an exclamation mark."
        add(prompt, f"{w}!", _regex(rf"^\s*{w}!\s*$"), 8, "exclaim")
    for a in rng.sample(range(1, 40), 20):
        b = a + rng.randint(2, 6)
        prompt = f"List the whole numbers from {a} to {b} in order, separated by commas, and nothing else."
        numbers_ab = [str(k) for k in range(a, b + 1)]
        pattern = r"^\W*" + r"\s*,\s*".join(numbers_ab) + r"\W*$"
        add(prompt, ", ".join(numbers_ab), _regex(pattern), 40, "count_list")
    short = [w for w in vocabulary if len(w) <= 6]
    for w in rng.sample(short, 15):
        prompt = f"Spell the word {w} with a hyphen between each pair of letters, and nothing else."
        add(prompt, "-".join(w), _regex(r"^\W*" + "-".join(w) + r"\W*$"), 24, "hyphen_letters")
    for w in rng.sample(vocabulary, 15):
        phrase = f"{rng.choice(passages.COLORS)} {w}"
        prompt = f"Rewrite this phrase in capital letters and reply with nothing else: {phrase}"
        pattern = r"^\W*" + r"\s+".join(phrase.upper().split()) + r"\W*$"
        add(prompt, phrase.upper(), _regex(pattern, False), 12, "upper_phrase")
    return rows


# --- the suites --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    skill: str
    scoring: str
    seed: int
    build: Callable[[random.Random], list[Row]]
    description: str
    version: int = VERSION


SPECS: tuple[SuiteSpec, ...] = (
    SuiteSpec(
        "arithmetic",
        "arithmetic",
        "likelihood",
        2601,
        build_arithmetic,
        "Subtraction, multiplication, exact division, halves, comparisons and short word problems "
        "(no two-digit additions: the learner's task); the right number must be more likely than "
        "three near misses (off by one or ten, digits swapped, the other number compared).",
        version=3,
    ),
    SuiteSpec(
        "factual_qa",
        "factual_qa",
        "likelihood",
        2602,
        build_factual_qa,
        "Capitals, continents, chemical symbols, planets, currencies and languages from curated "
        "tables; four options, the most likely one must be right.",
    ),
    SuiteSpec(
        "format_following",
        "format_following",
        "reference",
        2603,
        build_format_following,
        "Instructions on the form of the reply (case, yes/no, repetition, JSON, numbers in words "
        "or digits, quoting, lists); each reference reply passes its verifier, and the score is "
        "how likely the model is to reply exactly that (v2 scored greedy replies by the verifier).",
        version=3,
    ),
    SuiteSpec(
        "reading",
        "reading_comprehension",
        "likelihood",
        2604,
        build_reading,
        "A generated three-sentence passage and a question whose answer it states; the options "
        "are of the same kind, some from the passage.",
    ),
    SuiteSpec(
        "word_knowledge",
        "word_knowledge",
        "likelihood",
        2605,
        build_word_knowledge,
        "Opposites, synonyms, plurals, past tenses, animal young and sounds, categories of "
        "things, from curated tables; four options.",
    ),
)


def render(spec: SuiteSpec) -> str:
    """The suite file's text: a header, then the items shuffled once and numbered."""
    rng = random.Random(spec.seed)
    rows = spec.build(rng)
    rng.shuffle(rows)
    header: Row = {"name": spec.name, "version": spec.version, "skill": spec.skill, "scoring": spec.scoring}
    header["description"] = spec.description
    lines = [json.dumps({"suite": header}, ensure_ascii=False)]
    for i, row in enumerate(rows, 1):
        lines.append(json.dumps({"id": f"{spec.name}-{i:04d}", **row}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def build_all() -> dict[str, str]:
    """``{file name: text}`` of every v2 suite, each validated by the parser."""
    out = {}
    for spec in SPECS:
        text = render(spec)
        suite: Suite = parse_suite_jsonl(text, source="build")
        if len(suite.items) < MIN_ITEMS or suite.scoring != spec.scoring:
            raise ValueError(f"{spec.name}: {len(suite.items)} items ({suite.scoring})")
        out[f"{spec.name}.v{spec.version}.jsonl"] = text
    return out


def write(directory: Path) -> list[Path]:
    """Write every v2 suite file into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, text in build_all().items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILTIN_DIR, help="directory (default: the shipped data)")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)


if __name__ == "__main__":
    main()
