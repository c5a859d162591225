"""The cross-field rules of a feedback item as JSON Schema: ``FeedbackCreate``'s ``json_schema_extra``.

:meth:`server.feedback.protocol.FeedbackCreate.check` checks them at request time (so an error
can name the field inside a batch); this module says the same in the OpenAPI document: something
to learn from (one of :data:`SIGNALS`), a label that agrees with the reward, a verifier of a known
type with the options ``evals.verifiers.parse_verifier`` takes, and what each verifier needs of
``reference``.
"""

from __future__ import annotations

from typing import Any

from evals.verifiers import VERIFIER_TYPES

# The fields that give the learner something to learn from (at least one is required), with
# their non-null JSON types: read by FeedbackCreate.check and by item_rules.
SIGNALS: dict[str, dict[str, Any]] = {
    "reward": {"type": "number"},
    "label": {"type": "string"},
    "correction": {"type": "string"},
    "reference": {"type": "string"},
    "verifier": {"type": ["string", "object"]},
}

# evals.verifiers.parse_verifier: each verifier's options.
PATTERN = {"type": "string", "minLength": 1, "maxLength": 1000, "format": "regex"}
JSON_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]
VERIFIER_OPTIONS: dict[str, dict[str, Any]] = {
    "exact": {"case_sensitive": {"type": "boolean"}},
    "contains": {"case_sensitive": {"type": "boolean"}},
    "number": {
        "tolerance": {"type": "number", "minimum": 0},
        "partial": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "regex": {"pattern": PATTERN, "flags": {"type": "string", "pattern": "^[ims]*$"}},
    "json_schema": {"schema": {"type": "object", "properties": {"type": {"enum": JSON_TYPES}}}},
    "json": {},
}
NUMBER = r"^-?([0-9][0-9,]*([.][0-9]+)?([eE][-+]?[0-9]+)?|[.][0-9]+)[.]?$"


def item_rules(schema: dict[str, Any]) -> None:
    """Add FeedbackCreate.check's rules to the model's generated schema."""
    schema["anyOf"] = [{"required": [name], "properties": {name: s}} for name, s in SIGNALS.items()]
    up_below_zero = {
        "properties": {"label": {"const": "up"}, "reward": {"type": "number", "exclusiveMaximum": 0}}
    }
    down_above = {
        "properties": {"label": {"const": "down"}, "reward": {"type": "number", "exclusiveMinimum": 0}}
    }
    schema["not"] = {
        "anyOf": [{**rule, "required": ["label", "reward"]} for rule in (up_below_zero, down_above)]
    }
    schema["properties"]["verifier"]["anyOf"] = [
        {"type": "string", "enum": list(VERIFIER_TYPES)},
        *(
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"const": kind}, **opts},
                "additionalProperties": False,
            }
            for kind, opts in VERIFIER_OPTIONS.items()
        ),
        {"type": "null"},
    ]
    schema.setdefault("allOf", []).extend(_reference_rules())


def _verifier_is(kind: str, *, without: str | None = None) -> dict[str, Any]:
    """The feedback's verifier is ``kind`` (by name, or as an object without option ``without``)."""
    as_object: dict[str, Any] = {"type": "object", "properties": {"type": {"const": kind}}}
    if without:
        as_object["not"] = {"required": [without]}
    return {"required": ["verifier"], "properties": {"verifier": {"anyOf": [{"const": kind}, as_object]}}}


def _reference_rules() -> list[dict[str, Any]]:
    """What each verifier needs of ``reference`` (evals.verifiers._check), as if/then rules."""

    def needs(reference: dict[str, Any]) -> dict[str, Any]:
        return {"required": ["reference"], "properties": {"reference": {"type": "string", **reference}}}

    no_verifier = {
        "anyOf": [{"not": {"required": ["verifier"]}}, {"properties": {"verifier": {"type": "null"}}}]
    }
    given = {"required": ["reference"], "properties": {"reference": {"type": "string"}}}
    return [
        # a reference alone is checked by `exact`: it must not be empty
        {"if": {"allOf": [no_verifier, given]}, "then": needs({"minLength": 1})},
        {"if": _verifier_is("exact"), "then": needs({"minLength": 1})},
        {"if": _verifier_is("contains"), "then": needs({"minLength": 1})},
        {"if": _verifier_is("number"), "then": needs({"pattern": NUMBER})},
        {"if": _verifier_is("regex", without="pattern"), "then": needs(PATTERN)},
        {"if": _verifier_is("json"), "then": needs({"contentMediaType": "application/json"})},
        {
            "if": _verifier_is("json_schema", without="schema"),
            "then": needs(
                {
                    "contentMediaType": "application/json",
                    "contentSchema": VERIFIER_OPTIONS["json_schema"]["schema"],
                }
            ),
        },
    ]
