"""Verifiers: score a model reply against a reference, in [0, 1]. Pure Python, no I/O.

A verifier spec is either a name (``"number"``) or an object with a ``type`` and options:

=============  =====================================================================  ==========
type           scores 1.0 when                                                        options
=============  =====================================================================  ==========
exact          the reply equals the reference (trimmed; case-insensitive by default)  case_sensitive
contains       the reference occurs in the reply (case-insensitive by default)        case_sensitive
number         the reply's last number equals the reference number (within            tolerance,
               ``tolerance``); 0.2 if it appears elsewhere in the reply               partial
regex          ``pattern`` (default: the reference) matches anywhere in the reply      pattern, flags
json_schema    the reply (or its first {...} / [...] block) is JSON valid against      schema
               ``schema`` (default: the reference parsed as a JSON schema)
json           the reply's JSON (as for json_schema) equals the reference's JSON
               (key order and spacing aside); a tool call is scored this way, the
               reply being the call as ``{"name": ..., "arguments": {...}}``
=============  =====================================================================  ==========

Specs come from strangers (feedback), so regexes and schemas run bounded (``evals.bounded``):
regexes on RE2, schemas size-, depth- and step-limited with local references only. What can be
known bad is refused when the spec is parsed (``VerifierError``, a 400 at the gateway); a
verifier that fails while scoring raises ``VerifierFailed``, which callers score 0 and count.

>>> score("The answer is 42.", "42", "number")
1.0
>>> score("42 or maybe 41", "42", {"type": "number"})
0.2
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from evals import bounded
from evals.bounded import MAX_PATTERN_CHARS

VERIFIER_TYPES = ("exact", "contains", "number", "regex", "json_schema", "json")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_REGEX_FLAGS = "ims"  # ignore case, multi-line, dot matches newline


class VerifierError(ValueError):
    """A verifier spec (or its reference) is invalid; ``param`` names the offending part."""

    def __init__(self, message: str, param: str = "verifier"):
        super().__init__(message)
        self.param = param


class VerifierFailed(VerifierError):
    """A verifier failed or went past a bound while scoring one reply (score it 0, count it)."""


@dataclass(frozen=True)
class Verifier:
    """A validated verifier spec."""

    type: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.options}


def parse_verifier(spec: str | dict[str, Any], reference: str | None = None) -> Verifier:
    """Validate a verifier spec together with its reference; raise VerifierError if unusable."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise VerifierError("verifier must be a name or an object with a 'type'")
    kind = spec["type"]
    if kind not in VERIFIER_TYPES:
        raise VerifierError(f"unknown verifier type {kind!r}; one of {', '.join(VERIFIER_TYPES)}")
    options = {k: v for k, v in spec.items() if k != "type"}
    allowed = {
        "exact": {"case_sensitive"},
        "contains": {"case_sensitive"},
        "number": {"tolerance", "partial"},
        "regex": {"pattern", "flags"},
        "json_schema": {"schema"},
        "json": set(),
    }[kind]
    unknown = set(options) - allowed
    if unknown:
        raise VerifierError(f"verifier {kind!r} has no option {sorted(unknown)[0]!r}")
    _check(kind, options, reference)
    return Verifier(kind, options)


def _check(kind: str, options: dict[str, Any], reference: str | None) -> None:
    if "case_sensitive" in options and not isinstance(options["case_sensitive"], bool):
        raise VerifierError("case_sensitive must be true or false")
    if kind in ("exact", "contains") and not reference:
        raise VerifierError(f"verifier {kind!r} needs a non-empty reference", "reference")
    if kind == "number":
        if reference is None or parse_number(reference) is None:
            raise VerifierError("verifier 'number' needs a numeric reference", "reference")
        tol = options.get("tolerance", 1e-6)
        partial = options.get("partial", 0.2)
        if not isinstance(tol, int | float) or tol < 0:
            raise VerifierError("tolerance must be a number >= 0")
        if not isinstance(partial, int | float) or not 0 <= partial <= 1:
            raise VerifierError("partial must be in [0, 1]")
    if kind == "regex":
        pattern = options.get("pattern", reference)
        if not pattern or not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS:
            raise VerifierError(f"regex needs a pattern of 1..{MAX_PATTERN_CHARS} characters")
        flags = options.get("flags", "")
        if not isinstance(flags, str) or set(flags) - set(_REGEX_FLAGS):
            raise VerifierError("regex flags are a string of i, m, s")
        try:
            bounded.compile_regex(pattern, "".join(sorted(set(flags))))
        except bounded.Refused as exc:
            raise VerifierError(f"invalid regex pattern: {exc}") from exc
    if kind == "json":
        try:
            json.loads(reference or "")
        except json.JSONDecodeError as exc:
            raise VerifierError("verifier 'json' needs a JSON reference", "reference") from exc
    if kind == "json_schema":
        schema = _schema(options, reference)
        try:
            bounded.check_schema(schema)
        except bounded.Refused as exc:
            raise VerifierError(f"invalid JSON schema: {exc}") from exc


def _schema(options: dict[str, Any], reference: str | None) -> dict[str, Any]:
    schema = options.get("schema")
    if schema is None and reference:
        try:
            schema = json.loads(reference)
        except json.JSONDecodeError as exc:
            raise VerifierError("json_schema needs 'schema' or a JSON schema as reference") from exc
    if not isinstance(schema, dict):
        raise VerifierError("json_schema needs a 'schema' object")
    return schema


def parse_number(text: str) -> float | None:
    match = _NUMBER.fullmatch(text.strip().rstrip("."))
    return _to_float(match.group()) if match else None


def _to_float(token: str) -> float | None:
    try:
        value = float(token.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _json_candidate(reply: str) -> Any:
    text = reply.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON in reply")


def tool_call_text(tool_calls: list[dict[str, Any]]) -> str:
    """A reply's tool calls as the JSON text verifiers score: one call as
    ``{"name": ..., "arguments": {...}}``, several as a list of those."""
    calls = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                pass  # kept as the string the model wrote; it will not equal a JSON reference
        calls.append({"name": function.get("name"), "arguments": arguments})
    return json.dumps(calls[0] if len(calls) == 1 else calls, sort_keys=True)


def score(reply: str, reference: str | None, spec: str | dict[str, Any] | Verifier) -> float:
    """Score ``reply`` in [0, 1], in bounded time (``evals.bounded``).

    Raises:
        VerifierError: the spec is invalid (for a parsed ``Verifier``: no longer valid, e.g.
            stored before a bound was introduced; then as ``VerifierFailed``).
        VerifierFailed: the verifier went past a bound or failed on this reply.
    """
    if isinstance(spec, Verifier):
        try:
            return _score(reply or "", reference, spec)
        except VerifierFailed:
            raise
        except VerifierError as exc:
            raise VerifierFailed(str(exc), exc.param) from exc
    return _score(reply or "", reference, parse_verifier(spec, reference))


def _score(reply: str, reference: str | None, verifier: Verifier) -> float:
    opts = verifier.options
    if verifier.type in ("exact", "contains"):
        a, b = reply.strip(), (reference or "").strip()
        if not opts.get("case_sensitive", False):
            a, b = a.casefold(), b.casefold()
        return float(a == b) if verifier.type == "exact" else float(b in a)
    if verifier.type == "number":
        target = parse_number(reference or "")
        numbers = [n for n in (_to_float(t) for t in _NUMBER.findall(reply)) if n is not None]
        if target is None or not numbers:
            return 0.0
        tol = opts.get("tolerance", 1e-6)
        if abs(numbers[-1] - target) <= tol:
            return 1.0
        return float(opts.get("partial", 0.2)) if any(abs(n - target) <= tol for n in numbers) else 0.0
    try:
        if verifier.type == "regex":
            flags = "".join(sorted(set(opts.get("flags", ""))))
            return float(bounded.search(opts.get("pattern", reference), reply, flags))
        if verifier.type == "json":
            instance = _reply_json(reply)
            return float(instance is not _NO_JSON and instance == json.loads(reference or ""))
        schema = _schema(opts, reference)
        bounded.check_schema(schema)  # a stored spec may predate a bound; cheap next to validation
        instance = _reply_json(reply)
        return float(instance is not _NO_JSON and bounded.is_valid(instance, schema))
    except (bounded.Refused, bounded.Exceeded, RecursionError, ValueError) as exc:
        raise VerifierFailed(f"{verifier.type} verifier failed: {exc}") from exc


_NO_JSON = object()


def _reply_json(reply: str) -> Any:
    """The reply's JSON (``_json_candidate``), or ``_NO_JSON`` when it has none (a plain miss)."""
    bounded.check_reply(reply)
    try:
        return _json_candidate(reply)
    except ValueError:
        return _NO_JSON
