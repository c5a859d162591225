"""Schemathesis, a client we did not write, over the session gateway's whole OpenAPI document.

Every operation gets generated requests, valid and invalid, against the real gateway (vLLM CPU
engine, PostgreSQL), and every response goes through all of schemathesis' checks (its default
set: no 5xx, documented status codes, content types, headers and response schemas, valid data
accepted, invalid data rejected, auth enforced, unsupported methods answered 405 with a right
``Allow``). The expectation is zero failures: a failure is a gateway bug or an inexact document,
fixed there, never by loosening a check here.

Excluded (they change what the shared gateway serves or keeps, which later tests rely on):
promote, rollback, version rebuild, learner round trigger, suite upload and removal (the
suites every later round's gate scores), and feedback disable and delete (a drawn time range
takes every later round's feedback; tests/integration/test_feedback_quarantine.py covers them). Everything else runs, feedback POSTs included (their
generated completion ids were never issued, so nothing is stored).

Two settings beyond the defaults. ``negative_data_rejection`` also counts 413 (the body limit)
as a rejection; schemathesis' own list leaves it out although 413 is exactly that. And on the two
feedback POSTs, ``positive_data_acceptance`` takes a 400 as an answer: a verifier's reference
must suit the verifier (a ``json`` or ``json_schema`` reference must hold JSON, a ``regex`` one
must compile in Python), which the document says (``contentMediaType``, ``format: regex``,
descriptions) but JSON Schema can only annotate, and the generator draws such strings without
regard to it; its coverage phase also sends references ``map_body`` never sees. Every other
check runs on them, and every check everywhere else.

Cost: chat, completion and response requests reach the CPU engine, so generated bodies ask
for at most ``MAX_TOKENS`` tokens (``map_body`` lowers a valid token count, or adds one: a valid
value replaced by a valid one, so a case stays valid or invalid as generated). ``map_body`` also
makes a JSON verifier's reference hold JSON, the one rule of the document that JSON Schema can
only annotate (``contentMediaType``), so its generator ignores it.
Examples are bounded and the run is seeded and deterministic, so it is the same on every machine.

It drives schemathesis' engine, the one ``st run`` uses (every phase: examples, coverage,
fuzzing, stateful), with auth per security scheme of the document (``[auth.openapi.*]``).
Not the pytest loader ``schemathesis.pytest.from_fixture``: 4.32's sets ``request.node._nodeid``,
which pytest 9 no longer has.
"""

from __future__ import annotations

import json
import os

import hypothesis.strategies
import pytest
import schemathesis
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as ev

from tests.conftest import ADMIN_KEY, API_KEYS

# hypothesis imports its random strategy lazily; two engine workers drawing their first randoms()
# at once race on that import ("cannot import name 'RandomStrategy'"). Import it now, once.
hypothesis.strategies.randoms()

MAX_EXAMPLES = 15
MAX_TOKENS = 4
SEED = 17
EXCLUDED_PATH = r"/(promote|rebuild|rollback)$"
EXCLUDED = [
    ("POST", "/admin/learner/rounds"),
    ("POST", "/admin/suites"),
    ("DELETE", "/admin/suites/{name}"),
    ("POST", "/admin/feedback/disable"),
    ("POST", "/admin/feedback/delete"),
]
CONFIG = f"""
seed = {SEED}
workers = 1
request-timeout = 120

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true

[auth.openapi.apiKey]
bearer = "{API_KEYS[0]}"

[auth.openapi.adminKey]
bearer = "{ADMIN_KEY}"

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[[operations]]
include-path-regex = "^/v1/feedback(/batch)?$"
include-method = "POST"

[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


@pytest.fixture(scope="module")
def gateway_url(request) -> str:
    """The session's gateway, or (to iterate without an engine start per run) the one at
    ``PERENNIAL_TEST_GATEWAY_URL``, configured with the keys of tests/conftest.py."""
    return os.environ.get("PERENNIAL_TEST_GATEWAY_URL") or request.getfixturevalue("server").url


# The token fields each engine route reads, and the one to add when a body names none.
TOKEN_FIELDS = {
    "/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
    "/v1/completions": ("max_tokens",),
    "/v1/responses": ("max_output_tokens",),
}
JSON_VERIFIERS = ("json", "json_schema")


def _cap_tokens(body: dict, fields: tuple[str, ...]) -> None:
    given = False
    for key in fields:
        value = body.get(key)
        given = given or key in body
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            body[key] = min(value, MAX_TOKENS)
    if not given:
        body[fields[-1]] = MAX_TOKENS


def _json_reference(item: dict) -> None:
    """A json / json_schema verifier's reference must hold JSON (a schema object for
    json_schema). The document says so (``contentMediaType: application/json``), but JSON Schema
    only annotates content, so the generator does not honour it; this does."""
    verifier = item.get("verifier")
    kind = verifier.get("type") if isinstance(verifier, dict) else verifier
    if kind not in JSON_VERIFIERS or not isinstance(item.get("reference"), str):
        return
    if kind == "json_schema" and isinstance(verifier, dict) and "schema" in verifier:
        return
    try:
        value = json.loads(item["reference"])
    except ValueError:
        value = None
    if kind == "json" and value is None and item["reference"].strip() != "null":
        item["reference"] = json.dumps(item["reference"])
    elif kind == "json_schema" and not isinstance(value, dict):
        item["reference"] = "{}"


# Constraints the engine compiles: the document bounds a grammar, a regex or a JSON schema (size,
# depth) but cannot say that a drawn one parses, so a drawn value within bounds becomes one that
# does (a case stays valid or invalid as generated).
VALID_CONSTRAINT = {
    "regex": ("(yes|no)", 1000),
    "whitespace_pattern": ("[ ]?", 256),
    "grammar": ('root ::= "yes" | "no"', 20_000),
}


def _compilable(body: dict) -> None:
    constraint = body.get("structured_outputs")
    if isinstance(constraint, dict):
        for key, (valid, most) in VALID_CONSTRAINT.items():
            if isinstance(constraint.get(key), str) and len(constraint[key]) <= most:
                constraint[key] = valid
        if isinstance(constraint.get("json"), dict | str):
            constraint["json"] = {"type": "object"}
    fmt = body.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        spec["schema"] = {"type": "object"}
    for tool in body.get("tools") or () if isinstance(body.get("tools"), list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("parameters"), dict):
            function["parameters"] = {"type": "object"}


@schemathesis.hook
def map_body(context, body):
    """Keep valid cases valid and invalid ones invalid: a valid token count is lowered to
    ``MAX_TOKENS`` (or one is added), a JSON verifier's reference is made JSON."""
    operation = context.operation
    if operation is None or not isinstance(body, dict):
        return body
    if operation.path in TOKEN_FIELDS:
        _cap_tokens(body, TOKEN_FIELDS[operation.path])
        _compilable(body)
    elif operation.path == "/v1/feedback":
        _json_reference(body)
    elif operation.path == "/v1/feedback/batch" and isinstance(body.get("items"), list):
        for item in body["items"]:
            if isinstance(item, dict):
                _json_reference(item)
    return body


def test_gateway_conforms_to_its_openapi_document(gateway_url):
    config = schemathesis.Config.from_str(CONFIG)
    schema = schemathesis.openapi.from_url(gateway_url + "/openapi.json", config=config)
    schema.config.update(base_url=gateway_url)
    schema = schema.exclude(path_regex=EXCLUDED_PATH)
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    failures, errors, cases = [], [], 0
    for event in from_schema(schema).execute():
        if isinstance(event, ev.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        info = check.failure_info
                        failures.append(
                            f"{event.label}: {check.name}: {info.failure.title}\n{info.code_sample}"
                        )
        elif isinstance(event, ev.NonFatalError | ev.FatalError):
            errors.append(
                f"{getattr(event, 'label', '')}: {event.info.format() if hasattr(event, 'info') else event}"
            )
        elif isinstance(event, ev.EngineFinished):
            failures += [f"after run: {f.title}" for f in event.failures]
    unique = sorted(set(failures))
    assert cases > 0
    assert not errors, "\n\n".join(errors)
    assert not unique, f"{len(unique)} failures in {cases} cases:\n\n" + "\n\n".join(unique)
