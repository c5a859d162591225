"""Verifiers: table tests of every type, and spec validation naming the bad part."""

from __future__ import annotations

import pytest

from evals.verifiers import Verifier, VerifierError, VerifierFailed, parse_verifier, score

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    ("reply", "reference", "spec", "expected"),
    [
        ("Paris", "paris", "exact", 1.0),
        ("  Paris \n", "Paris", "exact", 1.0),
        ("Paris.", "Paris", "exact", 0.0),
        ("Paris", "paris", {"type": "exact", "case_sensitive": True}, 0.0),
        ("The capital is Paris.", "paris", "contains", 1.0),
        ("The capital is Lyon.", "paris", "contains", 0.0),
        ("12 + 7 = 19", "19", "number", 1.0),
        ("The answer is 1,234.", "1234", "number", 1.0),
        ("19 is close, but 18", "19", "number", 0.2),
        ("19 is close, but 18", "19", {"type": "number", "partial": 0.0}, 0.0),
        ("about 3.14159", "3.14", {"type": "number", "tolerance": 0.01}, 1.0),
        ("-5", "-5", "number", 1.0),
        ("no digits here", "5", "number", 0.0),
        ("", "5", "number", 0.0),
        ("Order #A-1234 confirmed", None, {"type": "regex", "pattern": r"#A-\d{4}"}, 1.0),
        ("HELLO world", "hello", {"type": "regex", "flags": "i"}, 1.0),
        ("HELLO world", "hello", "regex", 0.0),
        ('{"city": "Paris"}', None, {"type": "json_schema", "schema": SCHEMA}, 1.0),
        ('Sure! {"city": "Paris"} Done.', None, {"type": "json_schema", "schema": SCHEMA}, 1.0),
        ('```json\n{"city": "Rome"}\n```', None, {"type": "json_schema", "schema": SCHEMA}, 1.0),
        ('{"town": "Paris"}', None, {"type": "json_schema", "schema": SCHEMA}, 0.0),
        ("not json", None, {"type": "json_schema", "schema": SCHEMA}, 0.0),
        ('{"city": "Paris"}', '{"type": "object", "required": ["city"]}', "json_schema", 1.0),
    ],
)
def test_scores(reply, reference, spec, expected):
    assert score(reply, reference, spec) == expected


@pytest.mark.parametrize(
    ("spec", "reference", "param"),
    [
        ("fuzzy", "x", "verifier"),
        ({"kind": "exact"}, "x", "verifier"),
        (42, "x", "verifier"),
        ("exact", "", "reference"),
        ("contains", None, "reference"),
        ("number", "forty-two", "reference"),
        ({"type": "number", "tolerance": -1}, "4", "verifier"),
        ({"type": "number", "partial": 2}, "4", "verifier"),
        ({"type": "regex", "pattern": "(unclosed"}, None, "verifier"),
        ({"type": "regex", "flags": "x"}, "a", "verifier"),
        ({"type": "regex"}, None, "verifier"),
        ({"type": "json_schema"}, "not json", "verifier"),
        ({"type": "json_schema", "schema": {"type": "nonsense"}}, None, "verifier"),
        ({"type": "exact", "tolerance": 1}, "x", "verifier"),
    ],
)
def test_bad_specs_are_refused_naming_the_part(spec, reference, param):
    with pytest.raises(VerifierError) as info:
        parse_verifier(spec, reference)
    assert info.value.param == param


def test_round_trip_to_json():
    v = parse_verifier({"type": "number", "tolerance": 0.5}, "3")
    assert parse_verifier(v.to_json(), "3") == v


# --- hostile specs: bounded in time and size (evals.bounded) ---------------------------------------
CATASTROPHIC = "(a+)+$"  # Python's re backtracks 2^n times on "a" * n + "b"


def test_a_catastrophic_regex_is_scored_in_linear_time():
    """Python's re takes ~1.8 s at n = 24 and 4x longer per 2 more characters (minutes at 30)."""
    import subprocess
    import sys
    import time

    code = (
        "from evals.verifiers import score\n"
        f"assert score('a' * 40 + 'b', None, {{'type': 'regex', 'pattern': {CATASTROPHIC!r}}}) == 0.0\n"
        f"schema = {{'properties': {{'x': {{'pattern': {CATASTROPHIC!r}}}}}}}\n"
        "assert score('{\"x\": \"' + 'a' * 40 + 'b\"}', None, {'type': 'json_schema', 'schema': schema}) == 0.0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)  # the old re: hours
    started = time.perf_counter()
    assert score("a" * 99_990 + "b", None, {"type": "regex", "pattern": CATASTROPHIC}) == 0.0
    assert score("a" * 99_990, None, {"type": "regex", "pattern": CATASTROPHIC}) == 1.0
    assert time.perf_counter() - started < 0.5


def _deep(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"items": schema}
    return schema


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "regex", "pattern": "(?<=a)b"},  # lookbehind: not RE2
        {"type": "regex", "pattern": r"(a)\1"},  # backreference
        {"type": "regex", "pattern": "a" * 1001},
        {"type": "json_schema", "schema": {"$ref": "https://example.com/schema.json"}},
        {"type": "json_schema", "schema": {"properties": {"a": {"$ref": "other.json#/x"}}}},
        {"type": "json_schema", "schema": {"patternProperties": {"^a": {}}}},
        {"type": "json_schema", "schema": {"properties": {"a": {"pattern": "(?=x)"}}}},
        {"type": "json_schema", "schema": _deep(40)},
        {"type": "json_schema", "schema": {"enum": ["x" * 100] * 300}},
    ],
)
def test_specs_that_cannot_run_bounded_are_refused_at_acceptance(spec):
    with pytest.raises(VerifierError) as info:
        parse_verifier(spec, None)
    assert info.value.param == "verifier" and not isinstance(info.value, VerifierFailed)


def _fan_out(levels: int) -> dict:
    """anyOf of two refs to the next level: 2^levels evaluations unless metered."""
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    return {"$defs": {**defs, f"d{levels}": {"type": "string"}}, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize(
    ("reply", "spec"),
    [
        ("{}", {"type": "json_schema", "schema": {"$ref": "#"}}),  # a cycle: passes check_schema
        ("{}", {"type": "json_schema", "schema": {"$ref": "#/$defs/missing"}}),
        ("5", {"type": "json_schema", "schema": _fan_out(30)}),
        (
            "[" + ",".join(f'{{"a": {i}}}' for i in range(500)) + "]",
            {"type": "json_schema", "schema": {"uniqueItems": True}},
        ),
        ("[" * 50_000, {"type": "json_schema", "schema": {}}),  # JSON nested past the recursion limit
        ("x" * 100_001, {"type": "regex", "pattern": "x"}),
        ("x" * 100_001, "json"),
    ],
)
def test_a_verifier_past_its_bounds_fails_fast_as_verifier_failed(reply, spec):
    import time

    verifier = parse_verifier(spec, "{}")
    started = time.perf_counter()
    with pytest.raises(VerifierFailed):
        score(reply, "{}", verifier)
    assert time.perf_counter() - started < 5.0  # milliseconds when idle; the bound is far below a runaway


def test_a_stored_spec_that_breaks_a_new_bound_fails_at_scoring():
    """Feedback accepted before RE2 may hold a lookaround: scored 0 and counted, never run."""
    with pytest.raises(VerifierFailed):
        score("ab", None, Verifier("regex", {"pattern": "(?<=a)b"}))
    with pytest.raises(VerifierFailed):
        score("{}", None, Verifier("json_schema", {"schema": {"$ref": "https://example.com/s"}}))


def test_regex_flags_and_json_null_keep_their_meaning():
    assert score("a\nB", None, {"type": "regex", "pattern": "^b$", "flags": "mi"}) == 1.0
    assert score("a\nb", None, {"type": "regex", "pattern": "a.b", "flags": "s"}) == 1.0
    assert score("a\nb", None, {"type": "regex", "pattern": "a.b"}) == 0.0
    assert score("null", "null", "json") == 1.0 and score("no json here", "null", "json") == 0.0
    assert score("null", None, {"type": "json_schema", "schema": {"type": "null"}}) == 1.0


async def test_hostile_verifiers_score_zero_and_are_counted_the_rest_scored():
    from learner.fitness import score_verifiable
    from learner.items import VerifiableItem

    class Client:
        async def chat(self, body: dict) -> dict:
            return {"choices": [{"message": {"content": '{"a": "' + "a" * 40 + 'b"}'}}]}

    class Engine:
        client, served_name = Client(), "learner"

    def item(i: int, verifier: Verifier) -> VerifiableItem:
        return VerifiableItem(
            id=f"i{i}", messages=({"role": "user", "content": "q"},), reference="{}", verifier=verifier
        )

    good = Verifier("regex", {"pattern": "(a+)+b"})
    cyclic = parse_verifier({"type": "json_schema", "schema": {"$ref": "#"}})
    stale = Verifier("regex", {"pattern": "(?<=a)b"})
    scores, failed, verifier_failed = await score_verifiable(
        Engine(), [item(0, good), item(1, cyclic), item(2, stale)], max_tokens=8
    )
    assert scores == [1.0, 0.0, 0.0] and failed == verifier_failed == 2
