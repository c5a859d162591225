"""Prior-capability suites: versioned JSONL data the promotion gate scores every candidate on.

A suite file is UTF-8 JSONL, one JSON object per line (blank lines are ignored):

* an optional **header**, which must be the first object::

    {"suite": {"name": "factual_qa", "version": 1, "skill": "factual_qa",
               "description": "...", "max_tokens": 24}}

  ``name`` (``[a-z0-9][a-z0-9_-]*``, at most 64 characters) and ``version`` (an integer >= 1)
  may instead be given by the caller (the admin upload names the suite); ``skill`` defaults to
  the name; ``max_tokens`` is the default for items (32 if absent).

* then one **item** per line::

    {"id": "factual_qa-001",
     "messages": [{"role": "user", "content": "What is the capital of France?"}],
     "reference": "Paris",
     "verifier": "contains",
     "max_tokens": 24}

  ``id``: unique in the suite, 1-64 characters. ``messages``: a non-empty chat whose last turn is
  the user's (roles system / user / assistant); ``"prompt": "..."`` is shorthand for a single
  user turn. ``reference``: a string. ``verifier``: a verifier spec of
  :mod:`evals.verifiers` (a name such as ``"contains"`` or an object such as
  ``{"type": "regex", "pattern": "^\\\\W*yes\\\\W*$", "flags": "i"}``), checked together with the
  reference when the file is loaded. ``max_tokens`` (optional, 1-1024): the greedy reply budget.
  ``tags`` (optional): a list of strings. Any other key is an error, so typos do not pass.

A suite is scored by greedy (temperature 0) chat completions; its score is the mean item score
in [0, 1] (see :mod:`learner.evaluate`). ``Suite.sha256`` hashes the canonical form of the
content (header + items, keys sorted), so scores can be cached per content, not per file name.

Probe prompts for the function-space drift measurement (:mod:`learner.drift`) live in
``data/probes.v1.jsonl``: one ``{"id": ..., "messages": [...]}`` per line.
"""

from evals.suites.registry import (
    BUILTIN_DIR,
    Probe,
    Suite,
    SuiteError,
    SuiteItem,
    load_builtin_suites,
    load_probes,
    load_suite_file,
    parse_suite_jsonl,
)

__all__ = [
    "BUILTIN_DIR",
    "Probe",
    "Suite",
    "SuiteError",
    "SuiteItem",
    "load_builtin_suites",
    "load_probes",
    "load_suite_file",
    "parse_suite_jsonl",
]
