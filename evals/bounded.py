"""Run verifier regexes and JSON schemas from strangers in bounded time: no spec stalls a round.

A verifier arrives with feedback, from any caller, and the learner runs it on every member's
reply (with the embedded learner, on the gateway's event loop). So:

* **Regexes run on RE2** (``google-re2``): matching is linear in the text, whatever the pattern;
  ``(a+)+$`` on 10^5 characters takes a fraction of a millisecond where Python's ``re`` takes
  minutes on 30. RE2 has no backreferences or lookarounds: such patterns are refused.
* **JSON schemas are checked before use**: at most ``MAX_SCHEMA_CHARS`` of JSON, nesting at most
  ``MAX_SCHEMA_DEPTH``, only local ``$ref`` (``#...``; nothing is fetched), no
  ``patternProperties`` (jsonschema would run its keys with Python's ``re``), and every
  ``pattern`` compiled by RE2 (the validator runs it on RE2 too).
* **Validation is metered**: each keyword evaluation spends one step of ``MAX_SCHEMA_STEPS``
  (``uniqueItems`` spends n^2), so refs that fan out (``anyOf`` of refs of ``anyOf``...) stop
  instead of running 2^depth times; a ref cycle (``{"$ref": "#"}``) stops at Python's recursion
  limit. Either raises ``Exceeded``: the verifier scores 0 for that item and is counted.
* Replies over ``MAX_REPLY_CHARS`` are not matched at all (``Exceeded``).

>>> compile_regex("(a+)+$").search("a" * 30 + "b") is None
True
"""

from __future__ import annotations

import contextvars
import functools
import json
from typing import Any

import jsonschema
import re2
import referencing
import referencing.exceptions

MAX_PATTERN_CHARS = 1000
MAX_REPLY_CHARS = 100_000
MAX_SCHEMA_CHARS = 20_000
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_STEPS = 10_000
_RE2_MEM = 8 << 20  # bytes of compiled program and DFA cache per regex (RE2's default)
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


class Refused(ValueError):
    """A regex or schema that cannot be run within bounds: refuse it when it is submitted."""


class Exceeded(RuntimeError):
    """Running a verifier went past a bound (steps, recursion, reply size, unresolved ref)."""


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str, flags: str = "") -> Any:
    """An RE2 regex for ``pattern`` with flags ``i``, ``m``, ``s`` (as Python's ``re`` spells them).

    Raises:
        Refused: longer than ``MAX_PATTERN_CHARS``, or not RE2 syntax (backreferences,
            lookarounds), or its program is too large.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise Refused(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MEM
    inline = f"(?{flags})" if flags else ""
    try:
        return re2.compile(inline + pattern, options)
    except re2.error as exc:
        message = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        raise Refused(f"not a linear-time (RE2) regex: {message}") from exc


def search(pattern: str, text: str, flags: str = "") -> bool:
    """Whether ``pattern`` matches anywhere in ``text``, in time linear in ``text``.

    Raises:
        Refused: the pattern (see ``compile_regex``).
        Exceeded: ``text`` is longer than ``MAX_REPLY_CHARS``.
    """
    check_reply(text)
    return compile_regex(pattern, flags).search(text) is not None


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse a JSON schema that could not be run within bounds, or is not a schema at all.

    Raises:
        Refused: too large or too deep, a remote reference, ``patternProperties``, a
            ``pattern`` RE2 cannot compile, or invalid against its meta-schema.
    """
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_CHARS:
        raise Refused(f"schema of {size} characters; at most {MAX_SCHEMA_CHARS}")
    _walk(schema, 0)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise Refused(exc.message) from exc


def _walk(node: Any, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise Refused(f"schema nested deeper than {MAX_SCHEMA_DEPTH}")
    if isinstance(node, list):
        for child in node:
            _walk(child, depth + 1)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
            raise Refused(f"{key} {value!r}: only local references (#...) are resolved")
        if key == "patternProperties":
            raise Refused("patternProperties is not supported; use propertyNames with a pattern")
        if key == "pattern" and isinstance(value, str):
            compile_regex(value)
        _walk(value, depth + 1)


def is_valid(instance: Any, schema: dict[str, Any]) -> bool:
    """Whether ``instance`` is valid against ``schema`` (checked by ``check_schema``), metered.

    Raises:
        Exceeded: more than ``MAX_SCHEMA_STEPS`` keyword evaluations, a reference cycle or an
            unresolvable reference.
    """
    # An empty registry: a reference outside the schema is never fetched (jsonschema's default
    # registry would GET a remote URL), it is unresolvable.
    validator = _metered(jsonschema.validators.validator_for(schema))(schema, registry=referencing.Registry())
    token = _STEPS.set([MAX_SCHEMA_STEPS])
    try:
        return next(validator.iter_errors(instance), None) is None
    except RecursionError as exc:
        raise Exceeded("schema recursion too deep (a reference cycle?)") from exc
    except referencing.exceptions.Unresolvable as exc:
        raise Exceeded(f"unresolvable reference: {exc}") from exc
    finally:
        _STEPS.reset(token)


def check_reply(text: str) -> None:
    """Raises Exceeded for a reply longer than ``MAX_REPLY_CHARS``."""
    if len(text) > MAX_REPLY_CHARS:
        raise Exceeded(f"reply of {len(text)} characters; verifiers read at most {MAX_REPLY_CHARS}")


# Steps left in the current validation; a list so keyword functions can spend from it.
_STEPS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("verifier_schema_steps")


def _spend(steps: int) -> None:
    left = _STEPS.get()
    left[0] -= steps
    if left[0] < 0:
        raise Exceeded(f"schema validation took more than {MAX_SCHEMA_STEPS} steps")


def _counted(keyword: str, fn):
    def run(validator, value, instance, schema):
        cost = len(instance) ** 2 if keyword == "uniqueItems" and isinstance(instance, list) else 1
        _spend(cost)
        return fn(validator, value, instance, schema)

    return run


def _pattern(validator, pattern, instance, schema):
    # jsonschema's own runs Python's re; check_schema has compiled every pattern with RE2.
    if validator.is_type(instance, "string") and compile_regex(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _metered(base: type) -> type:
    """``base`` (a jsonschema validator class) with RE2 patterns and every keyword metered."""
    keywords = {**base.VALIDATORS, "pattern": _pattern}
    return jsonschema.validators.extend(base, {k: _counted(k, fn) for k, fn in keywords.items()})
