"""Verifiers: table tests of every type, and spec validation naming the bad part."""

from __future__ import annotations

import pytest

from evals.verifiers import VerifierError, parse_verifier, score

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
