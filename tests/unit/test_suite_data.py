"""The shipped suite data (v2; arithmetic and format_following v3): size, determinism, answers, overlap with the learner's task.

Answers are recomputed here from the prompt text (arithmetic, format instructions) or looked up
in the curated tables through each item's tags (facts, words), so a generator bug that pairs a
prompt with the wrong answer fails a test instead of silently lowering every score.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from evals.suites import (
    BUILTIN_DIR,
    SCORING_MODES,
    Suite,
    SuiteItem,
    build,
    facts,
    load_builtin_suites,
    passages,
    words,
)
from evals.tasks import make_addition
from evals.verifiers import score

SUITES = load_builtin_suites()
TASK_DIR = Path(make_addition.__file__).parent / "addition"
LIKELIHOOD = [s for s in SUITES.values() if s.scoring == "likelihood"]
# suites whose items carry a reference reply and its verifier (scored greedy, or by the
# reference's likelihood)
VERIFIED = [s for s in SUITES.values() if s.scoring in ("greedy", "reference")]


def prompt_of(item: SuiteItem) -> str:
    return item.messages[-1]["content"]


def normalized(item: SuiteItem) -> str:
    """The whole conversation, whitespace collapsed and case folded."""
    return " ".join(" ".join(m["content"] for m in item.messages).split()).casefold()


def test_at_least_5_suites_of_400_items_over_5_skills_each_declaring_its_scoring():
    assert len(SUITES) >= 5, list(SUITES)
    assert len({s.skill for s in SUITES.values()}) >= 5
    for suite in SUITES.values():
        assert len(suite.items) >= 400, (suite.name, len(suite.items))
        header = json.loads(
            (BUILTIN_DIR / f"{suite.name}.v{suite.version}.jsonl").read_text().splitlines()[0]
        )
        assert header["suite"]["scoring"] == suite.scoring in SCORING_MODES, suite.name
        form = "greedy" if suite.scoring == "reference" else suite.scoring  # items as greedy ones
        assert all(item.scoring == form for item in suite.items)
    assert len(LIKELIHOOD) >= 3 and len(VERIFIED) >= 1


def test_the_generator_reproduces_the_shipped_files_byte_for_byte(tmp_path):
    written = build.write(tmp_path)
    assert {p.name for p in written} == {f"{s.name}.v{s.version}.jsonl" for s in SUITES.values()}
    for path in written:
        assert path.read_bytes() == (BUILTIN_DIR / path.name).read_bytes(), path.name
        assert path.stat().st_size < 400_000, path.name


def test_item_ids_are_numbered_and_unique():
    ids = [item.id for suite in SUITES.values() for item in suite.items]
    assert len(ids) == len(set(ids))
    for suite in SUITES.values():
        assert [item.id for item in suite.items] == [
            f"{suite.name}-{i:04d}" for i in range(1, len(suite.items) + 1)
        ]


def test_no_duplicate_prompt_within_or_across_suites():
    seen: dict[str, str] = {}
    for suite in SUITES.values():
        for item in suite.items:
            key = normalized(item)
            assert key not in seen, (item.id, seen.get(key))
            seen[key] = item.id


def test_choices_are_distinct_listed_in_order_and_answers_balanced():
    for suite in LIKELIHOOD:
        positions: Counter[int] = Counter()
        for item in suite.items:
            assert 3 <= len(item.choices) <= 4, item.id
            assert len({c.casefold() for c in item.choices}) == len(item.choices), item.id
            assert item.answer is not None and 0 <= item.answer < len(item.choices)
            assert item.reference == item.choices[item.answer]
            if suite.name == "arithmetic":  # recall, not recognition: the near misses are not offered
                assert "Options" not in prompt_of(item), item.id
            else:  # the prompt offers the options in the order the scorer sees them
                assert f"Options: {', '.join(item.choices)}." in prompt_of(item), item.id
            if len(item.choices) == 4:
                positions[item.answer] += 1
        n = sum(positions.values())
        assert n >= 300, suite.name
        assert all(positions[k] >= 0.15 * n for k in range(4)), (suite.name, positions)


# --- answers from the tables ---------------------------------------------------------------------

# facts a person checked by hand, independent of the tables: the tables (and the items) must agree
ANCHORS = {
    ("capital", "France"): "Paris",
    ("capital", "Japan"): "Tokyo",
    ("capital", "Australia"): "Canberra",
    ("capital", "Canada"): "Ottawa",
    ("capital", "Kenya"): "Nairobi",
    ("continent", "Kenya"): "Africa",
    ("continent", "Peru"): "South America",
    ("symbol", "gold"): "Au",
    ("symbol", "sodium"): "Na",
    ("element", "Fe"): "Iron",
    ("atomic_number", "carbon"): "6",
    ("planet_order", "third"): "Earth",
    ("planet", "largest"): "Jupiter",
    ("currency", "Japan"): "yen",
    ("language", "Brazil"): "Portuguese",
    ("antonym", "hot"): "cold",
    ("opposite_direction", "north"): "south",
    ("turn_around", "east"): "west",
    ("synonym", "big"): "large",
    ("plural", "mouse"): "mice",
    ("past_tense", "go"): "went",
    ("young", "cat"): "kitten",
    ("sound", "cow"): "moo",
    ("category_of", "hammer"): "tool",
}
TABLES: dict[str, dict[str, str]] = {**facts.LOOKUP, **words.LOOKUP}
SAMPLED = {"capital_of", "category_of"}  # relations of which the suites ask a sample


def test_the_tables_relations_do_not_collide_and_match_the_anchors():
    assert not set(facts.LOOKUP) & set(words.LOOKUP)
    assert len(set(facts.CAPITALS.values())) == len(facts.CAPITALS)  # capital_of is one-to-one
    for (relation, key), value in ANCHORS.items():
        assert TABLES[relation][key] == value, (relation, key)


def test_every_table_item_has_the_tables_answer_and_no_other_right_choice():
    members = {category: set(ms) for category, (_, ms) in words.CATEGORIES.items()}
    found = {}
    for name in ("factual_qa", "word_knowledge"):
        for item in SUITES[name].items:
            relation, key = item.tags[0], item.tags[1]
            correct = item.choices[item.answer]
            wrong = [c for i, c in enumerate(item.choices) if i != item.answer]
            if relation == "category":
                assert correct == item.tags[2] and correct in members[key], item.id
                assert not members[key] & set(wrong), item.id
            elif relation == "not_category":
                assert correct == item.tags[2] and correct not in members[key], item.id
                assert set(wrong) <= members[key], item.id
            else:
                value = TABLES[relation][key]
                assert correct == value, (item.id, correct, value)
                assert value.casefold() not in {w.casefold() for w in wrong}, item.id
                assert key not in wrong, item.id  # a word is never offered as its own opposite
            found[(relation, key)] = correct
    for anchor, value in ANCHORS.items():
        if anchor[0] not in SAMPLED:
            assert found.get(anchor) == value, anchor
    # every key of a table is asked, except where the suite takes a sample
    for relation, table in TABLES.items():
        asked = {key for rel, key in found if rel == relation}
        assert asked == set(table) if relation not in SAMPLED else 0 < len(asked) < len(table), relation


def test_word_pairs_are_exclusive():
    """A word in two antonym (or synonym) pairs would make another pair's word a right choice."""
    for pairs in (words.ANTONYM_PAIRS, words.SYNONYM_PAIRS, words.DIRECTION_PAIRS):
        flat = [w for pair in pairs for w in pair]
        assert len(flat) == len(set(flat))
    for table in (words.PLURALS, words.PAST_TENSES):
        for key, (right, wrong) in table.items():
            assert right not in wrong and len(set(wrong)) == 3, key


# --- arithmetic: the answer recomputed from the prompt ------------------------------------------


def _exact_div(a: int, b: int) -> int:
    assert a % b == 0, (a, b)
    return a // b


def _sub(a: int, b: int) -> int:
    return a - b


def _mul(a: int, b: int) -> int:
    return a * b


ARITHMETIC: dict[str, list[tuple[str, Callable[..., int]]]] = {
    "subtraction": [
        (r"What is (\d+) - (\d+)\?", _sub),
        (r"What is (\d+) minus (\d+)\?", _sub),
        (r"Subtract (\d+) from (\d+)\.", lambda b, a: a - b),
    ],
    "multiplication": [
        (r"What is (\d+) times (\d+)\?", _mul),
        (r"What is (\d+) \* (\d+)\?", _mul),
        (r"Multiply (\d+) by (\d+)\.", _mul),
    ],
    "division": [
        (r"What is (\d+) divided by (\d+)\?", _exact_div),
        (r"What is (\d+) / (\d+)\?", _exact_div),
        (r"Divide (\d+) by (\d+)\.", _exact_div),
    ],
    "half": [(r"What is half of (\d+)\?", lambda n: _exact_div(n, 2))],
    "double": [(r"What is double (\d+)\?", lambda n: 2 * n)],
    "square": [(r"What is (\d+) squared\?", lambda n: n * n)],
    "larger": [(r"Which is larger, (\d+) or (\d+)\?", max)],
    "smaller": [(r"Which is smaller, (\d+) or (\d+)\?", min)],
    "after": [(r"What number comes right after (\d+)\?", lambda n: n + 1)],
    "before": [(r"What number comes right before (\d+)\?", lambda n: n - 1)],
    "word_subtraction": [
        (r"\w+ has (\d+) \w+\. \w+ gives (\d+) of them to a friend\. How many \w+ does \w+ have left\?", _sub)
    ],
    "word_multiplication": [(r"One \w+ holds (\d+) \w+\. How many \w+ are in (\d+) \w+\?", _mul)],
    "word_division": [
        (
            r"(\d+) \w+ are shared equally among (\d+) children\. How many \w+ does each child get\?",
            _exact_div,
        )
    ],
    "word_addition": [
        (r"\w+ has (\d+) \w+ and finds (\d+) more\. How many \w+ does \w+ have now\?", lambda a, b: a + b)
    ],
}
# the additions in disguise: their operands, which must not both be in the task's 10..99
ADDENDS: dict[str, Callable[[list[int]], tuple[int, int]]] = {
    "word_addition": lambda ns: (ns[0], ns[1]),
    "double": lambda ns: (ns[0], ns[0]),
    "after": lambda ns: (ns[0], 1),
}


def test_arithmetic_answers_recomputed_from_the_prompt():
    kinds: Counter[str] = Counter()
    for item in SUITES["arithmetic"].items:
        (tag,) = item.tags
        text = prompt_of(item)
        assert text.endswith(" Reply with only the number."), item.id
        stem = text.removesuffix(" Reply with only the number.")
        matches = [(fn, m) for pattern, fn in ARITHMETIC[tag] if (m := re.fullmatch(pattern, stem))]
        assert len(matches) == 1, (item.id, stem)
        fn, match = matches[0]
        numbers = [int(g) for g in match.groups()]
        assert fn(*numbers) == int(item.reference), (item.id, stem, item.reference)
        assert all(c.isdigit() for c in item.choices), item.id  # near misses: numbers >= 0
        assert [int(c) for c in item.choices].count(fn(*numbers)) == 1, item.id
        if tag in ADDENDS:
            a, b = ADDENDS[tag](numbers)
            assert min(a, b) < 10, (item.id, stem)
        kinds[tag] += 1
    assert set(kinds) == set(ARITHMETIC) and min(kinds.values()) >= 8, kinds


# --- no overlap with the learner's training task --------------------------------------------------


def _task_prompts() -> set[str]:
    out = set()
    for path in sorted(TASK_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.add(" ".join(json.loads(line)["prompt"].split()).casefold())
    return out


def test_no_suite_prompt_is_or_looks_like_a_training_prompt():
    task = _task_prompts()
    assert len(task) >= 300
    template = re.escape(make_addition.PROMPT).replace(r"\{a\}", r"\d+").replace(r"\{b\}", r"\d+")
    template = template.split(r"\?")[0]  # "What is a + b" with any tail
    plus = re.compile(r"(\d+)\s*(?:\+|plus|added to)\s*(\d+)", re.IGNORECASE)
    for suite in SUITES.values():
        for item in suite.items:
            text = " ".join(m["content"] for m in item.messages)
            assert normalized(item) not in task, item.id
            assert not re.search(template, text, re.IGNORECASE), item.id
            for a, b in plus.findall(text):
                assert not (10 <= int(a) <= 99 and 10 <= int(b) <= 99), (item.id, text)


# --- greedy items: references verify, wrong answers do not ---------------------------------------

ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_WORD_NUMBERS = {w: i for i, w in enumerate(ONES)}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}


def words_to_number(text: str) -> int:
    """``forty-two`` -> 42 (an independent reading of the generator's number words)."""
    parts = text.split("-")
    if len(parts) == 1:
        return _WORD_NUMBERS[text] if text in _WORD_NUMBERS else _TENS[text]
    return _TENS[parts[0]] + _WORD_NUMBERS[parts[1]]


def number_to_words(n: int) -> str:
    """42 -> ``forty-two``."""
    ones = {i: w for w, i in _WORD_NUMBERS.items()}
    tens = {i: w for w, i in _TENS.items()}
    if n < 20:
        return ones[n]
    return tens[n - n % 10] + (f"-{ones[n % 10]}" if n % 10 else "")


def _flip(ref: str) -> str:
    return {"yes": "no", "no": "yes", "true": "false", "false": "true"}[ref]


def _drop_last(ref: str) -> str:
    return ", ".join(ref.split(", ")[:-1])


# tag -> (prompt pattern, the reference it implies, a plausible wrong reply)
FORMAT: dict[str, tuple[str, Callable[[re.Match[str]], str], Callable[[str, re.Match[str]], str]]] = {
    "caps": (
        r"Reply with only the word (\w+) in capital letters\.",
        lambda m: m[1].upper(),
        lambda ref, m: ref.lower(),
    ),
    "lower": (
        r"Reply with only the word (\w+) in lowercase letters\.",
        lambda m: m[1].lower(),
        lambda ref, m: ref.upper(),
    ),
    "true_false": (
        r"Answer with true or false only: (\d+) is an (even|odd) number\.",
        lambda m: "true" if (int(m[1]) % 2 == 0) == (m[2] == "even") else "false",
        lambda ref, m: _flip(ref),
    ),
    "repeat": (
        r"Write the word (\w+) (two|three|four) times, separated by commas, and nothing else\.",
        lambda m: ", ".join([m[1]] * _WORD_NUMBERS[m[2]]),
        lambda ref, m: _drop_last(ref) if ", " in ref else ref,
    ),
    "json_name": (
        r'Reply with only a JSON object with the key "name" and the value "(\w+)"\.',
        lambda m: json.dumps({"name": m[1]}),
        lambda ref, m: json.dumps({"name": m[1] + "a"}),
    ),
    "json_pair": (
        r'Reply with only a JSON object with the keys "city" and "year", where "city" is "(\w+)" and '
        r'"year" is the number (\d+)\.',
        lambda m: json.dumps({"city": m[1], "year": int(m[2])}),
        lambda ref, m: json.dumps({"city": m[1], "year": m[2]}),
    ),
    "json_list": (
        r"Reply with only a JSON list of the whole numbers from (\d+) to (\d+), in order\.",
        lambda m: json.dumps(list(range(int(m[1]), int(m[2]) + 1))),
        lambda ref, m: json.dumps(json.loads(ref)[:-1]),
    ),
    "spell_out": (
        r"Reply with only the number (\d+) written out in lowercase words\.",
        lambda m: number_to_words(int(m[1])),
        lambda ref, m: m[1],
    ),
    "digits": (
        r"Reply with only the number ([a-z-]+) written in digits\.",
        lambda m: str(words_to_number(m[1])),
        lambda ref, m: m[1],
    ),
    "first_letter": (
        r"Reply with only the first letter of the word (\w+)\.",
        lambda m: m[1][0],
        lambda ref, m: m[1],
    ),
    "last_word": (
        r"Reply with only the last word of this sentence: The \w+ \w+ sat next to the (\w+)\.",
        lambda m: m[1],
        lambda ref, m: "The",
    ),
    "exact_words": (
        r"Reply with exactly these three words, in this order, separated by spaces: (\w+) (\w+) (\w+)",
        lambda m: f"{m[1]} {m[2]} {m[3]}",
        lambda ref, m: f"{m[3]} {m[2]} {m[1]}",
    ),
    "quote": (
        r"Reply with only the word (\w+) inside double quotation marks\.",
        lambda m: f'"{m[1]}"',
        lambda ref, m: m[1],
    ),
    "exclaim": (
        r"Reply with only the word (\w+) followed by an exclamation mark\.",
        lambda m: f"{m[1]}!",
        lambda ref, m: f"{m[1]}.",
    ),
    "count_list": (
        r"List the whole numbers from (\d+) to (\d+) in order, separated by commas, and nothing else\.",
        lambda m: ", ".join(str(k) for k in range(int(m[1]), int(m[2]) + 1)),
        lambda ref, m: _drop_last(ref),
    ),
    "hyphen_letters": (
        r"Spell the word (\w+) with a hyphen between each pair of letters, and nothing else\.",
        lambda m: "-".join(m[1]),
        lambda ref, m: m[1],
    ),
    "upper_phrase": (
        r"Rewrite this phrase in capital letters and reply with nothing else: (\w+ \w+)",
        lambda m: m[1].upper(),
        lambda ref, m: m[1],
    ),
}
_YES_NO_NUMBERS = r"Answer with yes or no only: Is (\d+) larger than (\d+)\?"
_YES_NO_CATEGORY = r"Answer with yes or no only: Is an? (\w+) (an? [\w ]+)\?"
_PHRASES = {phrase: category for category, (phrase, _) in words.CATEGORIES.items()}


def _expected_format_reference(tag: str, text: str) -> tuple[str, str]:
    """(the reference the prompt implies, a plausible wrong reply), from the prompt alone."""
    if tag == "yes_no":
        if m := re.fullmatch(_YES_NO_NUMBERS, text):
            ref = "yes" if int(m[1]) > int(m[2]) else "no"
        else:
            m = re.fullmatch(_YES_NO_CATEGORY, text)
            assert m, text
            ref = "yes" if words.CATEGORY_OF[m[1]] == _PHRASES[m[2]] else "no"
        return ref, _flip(ref)
    pattern, expected, wrong = FORMAT[tag]
    m = re.fullmatch(pattern, text)
    assert m, (tag, text)
    ref = expected(m)
    return ref, wrong(ref, m)


def test_format_references_recomputed_from_the_prompt():
    kinds: Counter[str] = Counter()
    for item in SUITES["format_following"].items:
        (tag,) = item.tags
        text = prompt_of(item)
        ref, _ = _expected_format_reference(tag, text)
        assert item.reference == ref, (item.id, item.reference, ref)
        if tag == "spell_out":  # and read back the other way
            assert words_to_number(item.reference) == int(re.fullmatch(FORMAT[tag][0], text)[1])
        kinds[tag] += 1
    assert set(kinds) == set(FORMAT) | {"yes_no"}, kinds
    answers = Counter(i.reference for i in SUITES["format_following"].items if i.tags == ("yes_no",))
    assert answers["yes"] == answers["no"], answers


def test_references_verify_and_plausible_wrong_replies_do_not():
    for suite in VERIFIED:
        for item in suite.items:
            assert score(item.reference, item.reference, item.verifier) == 1.0, item.id
            _, wrong = _expected_format_reference(item.tags[0], prompt_of(item))
            assert wrong != item.reference
            assert score(wrong, item.reference, item.verifier) == 0.0, (item.id, wrong)


# --- reading --------------------------------------------------------------------------------------


def _passage(item: SuiteItem) -> str:
    return prompt_of(item).split("Passage: ", 1)[1].split("\n\nQuestion: ", 1)[0]


def test_reading_answers_are_stated_and_choices_are_of_the_same_kind():
    kinds: Counter[str] = Counter()
    for item in SUITES["reading"].items:
        _, template, kind = item.tags
        text = _passage(item)
        assert re.search(rf"\b{re.escape(item.reference)}\b", text), item.id
        assert set(item.choices) <= set(passages.KINDS[kind]), item.id
        assert len(item.choices) == (3 if kind == "name" else 4), item.id
        in_passage = [c for c in item.choices if re.search(rf"\b{re.escape(c)}\b", text)]
        if kind not in ("name", "town", "job"):  # only these have a second one in the passage
            assert in_passage == [item.reference], (item.id, in_passage)
        kinds[kind] += 1
    assert len(kinds) >= 10 and kinds["name"] >= 30, kinds
    assert len({t for i in SUITES["reading"].items for t in i.tags[1:2]}) == len(passages.TEMPLATES)


@pytest.mark.parametrize("suite", list(SUITES.values()), ids=list(SUITES))
def test_every_item_kind_is_well_represented(suite: Suite):
    """No tag dominates a suite: a suite that is 80% one kind measures one thing."""
    tags = Counter(item.tags[0] if suite.name != "reading" else item.tags[2] for item in suite.items)
    assert max(tags.values()) <= 0.4 * len(suite.items), tags
