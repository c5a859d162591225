"""The shipped suite data and the JSONL parser (errors name line and field): no engine."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from evals.suites import (
    BUILTIN_DIR,
    SCORING_MODES,
    SuiteError,
    load_builtin_suites,
    load_probes,
    load_suite_file,
    parse_suite_jsonl,
    split_looks,
    trim,
)
from evals.suites.registry import _items_sha256
from evals.verifiers import parse_verifier, score

SUITES = load_builtin_suites()


def test_at_least_2000_items_over_at_least_5_skills():
    per_skill = Counter()
    for suite in SUITES.values():
        per_skill[suite.skill] += len(suite.items)
    assert len(per_skill) >= 5, per_skill
    assert sum(per_skill.values()) >= 2000, per_skill
    # no skill is a token presence: each has enough items for 1 item < 0.25 points
    assert min(per_skill.values()) >= 400, per_skill
    assert {"likelihood", "reference"} <= {suite.scoring for suite in SUITES.values()} <= set(SCORING_MODES)


def test_builtin_files_are_versioned_and_named_after_their_header():
    for name, suite in SUITES.items():
        assert suite.source == f"builtin:{name}.v{suite.version}.jsonl"
        assert (BUILTIN_DIR / f"{name}.v{suite.version}.jsonl").is_file()


def test_every_raw_line_verifier_parses_with_its_reference():
    """Checks the files themselves (not the parser's output), line by line."""
    for path in sorted(BUILTIN_DIR.glob("*.v*.jsonl")):
        if path.name.startswith("probes."):
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        scoring = lines[0]["suite"]["scoring"]
        for row in lines[1:]:
            assert row["messages"][-1]["role"] == "user"
            if scoring in ("greedy", "reference"):  # a reply and its verifier
                parse_verifier(row["verifier"], row["reference"])
                assert "choices" not in row and "answer" not in row
            else:
                assert {"reference", "verifier", "max_tokens"}.isdisjoint(row), row["id"]
                assert row["choices"][row["answer"]]


def test_item_ids_are_unique_across_all_suites():
    ids = [item.id for suite in SUITES.values() for item in suite.items]
    assert len(ids) == len(set(ids))


def test_each_reference_satisfies_its_own_verifier():
    """A mis-authored regex/number/json_schema verifier would score its own answer 0.

    The shipped JSON items give the schema as an option, so their reference is an answer too; a
    likelihood item's reference is its correct choice, under exact match.
    """
    bad = [
        item.id
        for suite in SUITES.values()
        for item in suite.items
        if score(item.reference, item.reference, item.verifier) != 1.0
    ]
    assert not bad


def test_loading_is_deterministic_and_round_trips():
    again = load_builtin_suites()
    for name, suite in SUITES.items():
        assert again[name] == suite
        reparsed = parse_suite_jsonl(suite.to_jsonl(), source=suite.source)
        assert reparsed.sha256 == suite.sha256 and reparsed.items == suite.items
        assert (reparsed.name, reparsed.version, reparsed.skill) == (suite.name, suite.version, suite.skill)
        assert reparsed.scoring == suite.scoring and reparsed.summary()["scoring"] == suite.scoring


def test_hash_follows_items_not_labels():
    suite = SUITES["format_following"]  # a greedy suite
    renamed = parse_suite_jsonl(suite.to_jsonl(), name="math2", version=7)
    assert renamed.sha256 == suite.sha256 and renamed.name == "math2" and renamed.version == 7
    first = suite.items[0].to_json()
    changed = json.dumps({**first, "reference": "999"})
    other = parse_suite_jsonl(changed, name="math2")
    assert other.sha256 != parse_suite_jsonl(json.dumps(first), name="math2").sha256


def test_greedy_hash_is_the_items_alone_and_likelihood_hash_adds_the_mode():
    """A greedy suite hashes as before the scoring mode existed (cached scores stay valid); a
    likelihood or reference suite's hash also covers its mode (the same items scored another
    way are another cache entry)."""
    suite = SUITES["format_following"]
    assert suite.scoring == "reference"
    digest = hashlib.sha256()
    for item in suite.items:
        digest.update(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True).encode() + b"\n")
    assert _items_sha256(suite.items) == digest.hexdigest()  # what the greedy suite would hash to
    assert suite.sha256 == _items_sha256(suite.items, "reference") != digest.hexdigest()
    mc = SUITES["factual_qa"]
    assert mc.scoring == "likelihood"
    assert mc.sha256 == _items_sha256(mc.items, "likelihood") != _items_sha256(mc.items)


def test_probes():
    probes = load_probes()
    assert 24 <= len(probes) <= 64
    assert len({p.id for p in probes}) == len(probes)
    assert all(p.messages[-1]["role"] == "user" for p in probes)
    assert len({p.messages[-1]["content"] for p in probes}) == len(probes)


ITEM = {"id": "a", "messages": [{"role": "user", "content": "2+2?"}], "reference": "4", "verifier": "number"}
HEADER = {"suite": {"name": "mine", "version": 2, "skill": "math"}}
MC_ITEM = {"id": "q", "prompt": "What is the capital of France?", "choices": ["Lyon", "Paris"], "answer": 1}
MC_HEADER = {"suite": {"name": "mc", "version": 1, "scoring": "likelihood"}}


def jsonl(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


# (id, text, expected line, expected field, a phrase of the message)
BAD = [
    ("invalid-json", jsonl(HEADER, ITEM, '{"id": "b", "reference": '), 3, None, "invalid JSON"),
    ("not-an-object", jsonl(HEADER, "[1, 2]"), 2, None, "JSON object"),
    (
        "missing-reference",
        jsonl(HEADER, {k: v for k, v in ITEM.items() if k != "reference"}),
        2,
        "reference",
        "string",
    ),
    (
        "missing-verifier",
        jsonl(HEADER, {k: v for k, v in ITEM.items() if k != "verifier"}),
        2,
        "verifier",
        "required",
    ),
    (
        "unknown-verifier",
        jsonl(HEADER, {**ITEM, "verifier": "fuzzy"}),
        2,
        "verifier",
        "unknown verifier type",
    ),
    (
        "bad-regex",
        jsonl(HEADER, ITEM, {**ITEM, "id": "b", "verifier": {"type": "regex", "pattern": "("}}),
        3,
        "verifier",
        "invalid regex",
    ),
    ("number-needs-numeric-ref", jsonl(HEADER, {**ITEM, "reference": "four"}), 2, "reference", "numeric"),
    (
        "bad-schema",
        jsonl(HEADER, {**ITEM, "verifier": {"type": "json_schema", "schema": {"type": 5}}}),
        2,
        "verifier",
        "schema",
    ),
    ("duplicate-id", jsonl(HEADER, ITEM, ITEM), 3, "id", "duplicate id 'a' (first on line 2)"),
    ("header-not-first", jsonl(ITEM, HEADER), 2, "suite", "first line"),
    ("unknown-key", jsonl(HEADER, {**ITEM, "refrence": "4"}), 2, "refrence", "unknown key"),
    ("max-tokens-zero", jsonl(HEADER, {**ITEM, "max_tokens": 0}), 2, "max_tokens", "1..1024"),
    ("max-tokens-bool", jsonl(HEADER, {**ITEM, "max_tokens": True}), 2, "max_tokens", "integer"),
    (
        "last-turn-assistant",
        jsonl(HEADER, {**ITEM, "messages": [{"role": "assistant", "content": "hi"}]}),
        2,
        "messages",
        "user",
    ),
    (
        "bad-role",
        jsonl(HEADER, {**ITEM, "messages": [{"role": "robot", "content": "hi"}]}),
        2,
        "messages",
        "role",
    ),
    ("empty-messages", jsonl(HEADER, {**ITEM, "messages": []}), 2, "messages", "non-empty"),
    ("prompt-and-messages", jsonl(HEADER, {**ITEM, "prompt": "x"}), 2, "prompt", "not both"),
    ("id-too-long", jsonl(HEADER, {**ITEM, "id": "x" * 65}), 2, "id", "1..64"),
    ("bad-tags", jsonl(HEADER, {**ITEM, "tags": "math"}), 2, "tags", "list of strings"),
    ("bad-name", jsonl({"suite": {"name": "Bad Name"}}, ITEM), 1, "name", "suite name"),
    ("bad-version", jsonl({"suite": {"name": "ok", "version": 0}}, ITEM), 1, "version", ">= 1"),
    (
        "unknown-header-key",
        jsonl({"suite": {"name": "ok", "owner": "me"}}, ITEM),
        1,
        "owner",
        "unknown header key",
    ),
    ("no-items", jsonl(HEADER), None, None, "no items"),
    (
        "unknown-scoring",
        jsonl({"suite": {"name": "ok", "scoring": "beam"}}, ITEM),
        1,
        "scoring",
        "greedy, likelihood",
    ),
    ("greedy-item-with-choices", jsonl(HEADER, {**ITEM, "choices": ["4", "5"]}), 2, "choices", "likelihood"),
    ("greedy-item-with-answer", jsonl(HEADER, {**ITEM, "answer": 0}), 2, "answer", "only in likelihood"),
    ("mc-answer-out-of-range", jsonl(MC_HEADER, {**MC_ITEM, "answer": 2}), 2, "answer", "0..1"),
    ("mc-answer-negative", jsonl(MC_HEADER, {**MC_ITEM, "answer": -1}), 2, "answer", "0..1"),
    ("mc-answer-bool", jsonl(MC_HEADER, {**MC_ITEM, "answer": True}), 2, "answer", "integer"),
    ("mc-answer-string", jsonl(MC_HEADER, {**MC_ITEM, "answer": "0"}), 2, "answer", "integer"),
    (
        "mc-missing-answer",
        jsonl(MC_HEADER, {k: v for k, v in MC_ITEM.items() if k != "answer"}),
        2,
        "answer",
        "required",
    ),
    (
        "mc-missing-choices",
        jsonl(MC_HEADER, {k: v for k, v in MC_ITEM.items() if k != "choices"}),
        2,
        "choices",
        "required",
    ),
    (
        "mc-duplicate-choices",
        jsonl(MC_HEADER, MC_ITEM, {**MC_ITEM, "id": "r", "choices": ["Paris", "Lyon", "paris"]}),
        3,
        "choices",
        "duplicate choice 'paris' (choices 0 and 2)",
    ),
    ("mc-one-choice", jsonl(MC_HEADER, {**MC_ITEM, "choices": ["Paris"]}), 2, "choices", "2..8"),
    ("mc-nine-choices", jsonl(MC_HEADER, {**MC_ITEM, "choices": list("abcdefghi")}), 2, "choices", "2..8"),
    ("mc-choices-not-list", jsonl(MC_HEADER, {**MC_ITEM, "choices": "Paris"}), 2, "choices", "list"),
    ("mc-empty-choice", jsonl(MC_HEADER, {**MC_ITEM, "choices": ["Paris", " "]}), 2, "choices", "non-empty"),
    ("mc-number-choice", jsonl(MC_HEADER, {**MC_ITEM, "choices": ["Paris", 7]}), 2, "choices", "string"),
    (
        "mc-padded-choice",
        jsonl(MC_HEADER, {**MC_ITEM, "choices": ["Paris", "Lyon "]}),
        2,
        "choices",
        "whitespace",
    ),
    ("mc-verifier-given", jsonl(MC_HEADER, {**MC_ITEM, "verifier": "exact"}), 2, "verifier", "not allowed"),
    (
        "mc-reference-given",
        jsonl(MC_HEADER, {**MC_ITEM, "reference": "Paris"}),
        2,
        "reference",
        "not allowed",
    ),
    ("mc-max-tokens-given", jsonl(MC_HEADER, {**MC_ITEM, "max_tokens": 4}), 2, "max_tokens", "not allowed"),
    (
        "mc-header-max-tokens",
        jsonl({"suite": {"name": "mc", "scoring": "likelihood", "max_tokens": 8}}, MC_ITEM),
        1,
        "max_tokens",
        "likelihood",
    ),
    ("mc-unknown-key", jsonl(MC_HEADER, {**MC_ITEM, "answers": 0}), 2, "answers", "unknown key"),
    (
        "blank-lines-count",
        "\n\n" + jsonl(HEADER, "\n", {**ITEM, "verifier": "nope"}),
        6,
        "verifier",
        "unknown",
    ),
]


@pytest.mark.parametrize("text,line,field,phrase", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_errors_name_line_and_field(text, line, field, phrase):
    with pytest.raises(SuiteError) as info:
        parse_suite_jsonl(text)
    err = info.value
    assert (err.line, err.field) == (line, field)
    assert phrase in str(err)
    if line is not None:
        assert str(err).startswith(f"line {line}: ")
        assert err.param.startswith(f"line {line}")


def test_name_required_without_header_and_override_wins():
    with pytest.raises(SuiteError) as info:
        parse_suite_jsonl(jsonl(ITEM))
    assert info.value.field == "name"
    suite = parse_suite_jsonl(jsonl(HEADER, ITEM), name="other")
    assert (suite.name, suite.version, suite.skill) == ("other", 2, "math")


def test_prompt_shorthand_and_defaults():
    row = {"id": "p", "prompt": "Say hi", "reference": "hi", "verifier": "contains"}
    suite = parse_suite_jsonl(jsonl({"suite": {"name": "s", "max_tokens": 9}}, row))
    item = suite.items[0]
    assert item.messages == ({"role": "user", "content": "Say hi"},)
    assert item.max_tokens == 9 and suite.version == 1 and suite.skill == "s"


def test_load_suite_file_uses_file_name_or_checks_header(tmp_path):
    plain = tmp_path / "extra.v3.jsonl"
    plain.write_text(jsonl(ITEM))
    suite = load_suite_file(plain)
    assert (suite.name, suite.version, suite.source) == ("extra", 3, str(plain))
    wrong = tmp_path / "other.v1.jsonl"
    wrong.write_text(jsonl(HEADER, ITEM))
    with pytest.raises(SuiteError, match="header says mine v2"):
        load_suite_file(wrong)
    nameless = tmp_path / "notes.jsonl"
    nameless.write_text(jsonl(ITEM))
    with pytest.raises(SuiteError, match="no header name"):
        load_suite_file(nameless)


def test_probe_errors_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(jsonl({"id": "a", "prompt": "hi"}, {"id": "a", "prompt": "again"}))
    with pytest.raises(SuiteError) as info:
        load_probes(path)
    assert (info.value.line, info.value.field) == (2, "id")


def test_likelihood_item_parses_with_its_correct_choice_as_reference():
    suite = parse_suite_jsonl(jsonl(MC_HEADER, {**MC_ITEM, "tags": ["capital", "France"]}))
    item = suite.items[0]
    assert suite.scoring == "likelihood" and suite.summary()["scoring"] == "likelihood"
    assert (item.choices, item.answer, item.reference) == (("Lyon", "Paris"), 1, "Paris")
    assert item.scoring == "likelihood" and item.verifier.type == "exact"
    assert score("Paris", item.reference, item.verifier) == 1.0
    # the likelihood form comes back out: choices / answer, no verifier / reference / max_tokens
    row = item.to_json()
    assert set(row) == {"id", "messages", "choices", "answer", "tags"}
    again = parse_suite_jsonl(suite.to_jsonl())
    assert again.items == suite.items and again.sha256 == suite.sha256 and again.scoring == "likelihood"
    # a greedy suite is the default, and its header says so when written out
    greedy = parse_suite_jsonl(jsonl(HEADER, ITEM))
    assert greedy.scoring == "greedy" and greedy.items[0].scoring == "greedy"
    assert json.loads(greedy.to_jsonl().splitlines()[0])["suite"]["scoring"] == "greedy"


def test_scoring_mode_changes_the_hash():
    """Same prompt, same correct answer: greedy and likelihood content never share a hash."""
    mc = parse_suite_jsonl(jsonl(MC_HEADER, MC_ITEM))
    row = {"id": "q", "prompt": MC_ITEM["prompt"], "reference": "Paris", "verifier": "exact"}
    greedy = parse_suite_jsonl(jsonl(HEADER, row))
    assert mc.sha256 != greedy.sha256
    assert mc.sha256 != _items_sha256(mc.items)


def test_builtin_loader_takes_the_highest_version_of_each_name(tmp_path):
    for version in (1, 2, 10, 9):
        (tmp_path / f"quiz.v{version}.jsonl").write_text(jsonl({**ITEM, "reference": str(version)}))
    (tmp_path / "other.v1.jsonl").write_text(jsonl(ITEM))
    (tmp_path / "probes.v3.jsonl").write_text(jsonl({"id": "p", "prompt": "hi"}))
    suites = load_builtin_suites(tmp_path)
    assert list(suites) == ["other", "quiz"]
    assert suites["quiz"].version == 10 and suites["quiz"].items[0].reference == "10"
    assert suites["quiz"].source == "builtin:quiz.v10.jsonl"


def test_no_v1_suite_is_shipped_next_to_its_v2():
    names = {p.name for p in BUILTIN_DIR.glob("*.jsonl")}
    assert "probes.v1.jsonl" in names
    for suite in SUITES.values():
        assert suite.version >= 2
        assert f"{suite.name}.v1.jsonl" not in names


@pytest.mark.parametrize("looks", [1, 2, 3])
def test_looks_cover_every_item_once_and_each_slice_is_cached_apart(looks):
    suites = trim(list(load_builtin_suites().values()), 200) + [
        parse_suite_jsonl(
            '{"id": "only", "prompt": "Say hi.", "reference": "hi", "verifier": "contains"}', name="one"
        )
    ]
    parts = split_looks(suites, looks)
    assert len(parts) == looks
    assert {s.name for s in parts[0]} == {s.name for s in suites}  # the first look sees every suite
    for suite in suites:
        slices = [s for part in parts for s in part if s.name == suite.name]
        assert [i for s in slices for i in s.items] == list(suite.items)  # in order, each once
        shas = [s.sha256 for s in slices]
        assert len(set(shas)) == len(shas)
        assert (shas == [suite.sha256]) == (len(slices) == 1)
    with pytest.raises(ValueError):
        split_looks(suites, 0)
