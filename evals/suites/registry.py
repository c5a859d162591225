"""Parse and load suites and probe prompts (the format is documented in ``evals.suites``).

Pure data handling: no model, no network. Every error in an uploaded file is a
:class:`SuiteError` that names the line and the field, so the admin API can show it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evals.verifiers import Verifier, VerifierError, parse_verifier

BUILTIN_DIR = Path(__file__).resolve().parent / "data"
PROBES_FILE = "probes.v1.jsonl"
DEFAULT_MAX_TOKENS = 32
MAX_TOKENS_LIMIT = 1024
MAX_ITEMS = 5000
MAX_LINE_CHARS = 20_000
ROLES = ("system", "user", "assistant")
ITEM_KEYS = {"id", "messages", "prompt", "reference", "verifier", "max_tokens", "tags", "choices", "answer"}
HEADER_KEYS = {"name", "version", "skill", "description", "max_tokens", "scoring"}
SCORING_MODES = ("greedy", "likelihood", "reference")
# what an item of each scoring mode may not carry (the other mode's keys)
GREEDY_ONLY = ("reference", "verifier", "max_tokens")
LIKELIHOOD_ONLY = ("choices", "answer")
MIN_CHOICES, MAX_CHOICES = 2, 8
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FILE_NAME = re.compile(r"(?P<name>[a-z0-9][a-z0-9_-]{0,63})\.v(?P<version>[1-9]\d*)\.jsonl")


class SuiteError(ValueError):
    """A suite (or probe) file is invalid. ``line`` is 1-based; ``field`` names the key."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        where = f"line {line}: " if line is not None else ""
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")
        self.line = line
        self.field = field

    @property
    def param(self) -> str:
        """A short pointer for the OpenAI error envelope, e.g. ``line 3.verifier``."""
        if self.line is None:
            return self.field or "file"
        return f"line {self.line}" + (f".{self.field}" if self.field else "")


@dataclass(frozen=True)
class SuiteItem:
    """One prompt with its reference answer and verifier.

    A likelihood item also has ``choices`` and the index of the correct one in ``answer``; its
    ``reference`` is that choice and its ``verifier`` exact match, so code that only reads
    ``reference`` (listings, a greedy fallback) still sees the right answer.
    """

    id: str
    messages: tuple[dict[str, str], ...]
    reference: str
    verifier: Verifier
    max_tokens: int = DEFAULT_MAX_TOKENS
    tags: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    answer: int | None = None

    @property
    def scoring(self) -> str:
        """``"likelihood"`` for a multiple-choice item, else ``"greedy"``."""
        return "likelihood" if self.choices else "greedy"

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "messages": [dict(m) for m in self.messages]}
        if self.choices:
            row["choices"] = list(self.choices)
            row["answer"] = self.answer
        else:
            row["reference"] = self.reference
            row["verifier"] = self.verifier.to_json()
            row["max_tokens"] = self.max_tokens
        if self.tags:
            row["tags"] = list(self.tags)
        return row


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of items.

    ``sha256`` hashes the content that decides scores: the canonical items and, for a
    non-greedy suite, the scoring mode (a greedy suite hashes its items only, as before the
    mode existed). Name, version, skill and description are labels and do not count.
    """

    name: str
    version: int
    skill: str
    items: tuple[SuiteItem, ...]
    source: str
    sha256: str
    description: str = ""
    scoring: str = "greedy"

    def to_jsonl(self) -> str:
        """The canonical file text (header + items); parsing it gives the same suite."""
        header = {"name": self.name, "version": self.version, "skill": self.skill, "scoring": self.scoring}
        if self.description:
            header["description"] = self.description
        lines = [json.dumps({"suite": header}, ensure_ascii=False)]
        lines += [_canonical(item) for item in self.items]
        return "\n".join(lines) + "\n"

    def summary(self) -> dict[str, Any]:
        """JSON-ready metadata (no items), for listings."""
        return {
            "name": self.name,
            "version": self.version,
            "skill": self.skill,
            "scoring": self.scoring,
            "description": self.description,
            "items": len(self.items),
            "source": self.source,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Probe:
    """A prompt on which the candidate's output distribution is compared with the base's."""

    id: str
    messages: tuple[dict[str, str], ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _canonical(item: SuiteItem) -> str:
    return json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True)


def _items_sha256(items: tuple[SuiteItem, ...], scoring: str = "greedy") -> str:
    """The content hash of ``items`` scored in mode ``scoring`` (also used on trimmed suites)."""
    digest = hashlib.sha256()
    if scoring != "greedy":
        # a prefix line only for the newer mode keeps every greedy suite's hash unchanged
        digest.update(json.dumps({"scoring": scoring}).encode("utf-8") + b"\n")
    for item in items:
        digest.update(_canonical(item).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Parse JSONL into (line number, object) pairs, skipping blank lines."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise SuiteError(f"line longer than {MAX_LINE_CHARS} characters", line=lineno)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"invalid JSON: {exc.msg} (column {exc.colno})", line=lineno) from exc
        if not isinstance(obj, dict):
            raise SuiteError("each line must be a JSON object", line=lineno)
        rows.append((lineno, obj))
    return rows


def parse_messages(obj: dict[str, Any], lineno: int) -> tuple[dict[str, str], ...]:
    """Validate ``messages`` (or the ``prompt`` shorthand) of one line.

    Args:
        obj: the parsed line.
        lineno: its 1-based line number, for errors.
    Returns:
        The chat as a tuple of ``{"role", "content"}`` dicts; the last turn is the user's.
    """
    if "prompt" in obj:
        if "messages" in obj:
            raise SuiteError("give 'messages' or 'prompt', not both", line=lineno, field="prompt")
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise SuiteError("must be a non-empty string", line=lineno, field="prompt")
        return ({"role": "user", "content": prompt},)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SuiteError("must be a non-empty list of chat messages", line=lineno, field="messages")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
            raise SuiteError(f"message {i} must be {{'role', 'content'}}", line=lineno, field="messages")
        if msg["role"] not in ROLES or not isinstance(msg["content"], str) or not msg["content"]:
            raise SuiteError(
                f"message {i} needs a role in {ROLES} and non-empty text",
                line=lineno,
                field="messages",
            )
        out.append({"role": msg["role"], "content": msg["content"]})
    if out[-1]["role"] != "user":
        raise SuiteError("the last message must be the user's", line=lineno, field="messages")
    return tuple(out)


def _max_tokens(value: Any, lineno: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise SuiteError(f"must be an integer in 1..{MAX_TOKENS_LIMIT}", line=lineno, field="max_tokens")
    return value


def _tags(obj: dict[str, Any], lineno: int) -> tuple[str, ...]:
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SuiteError("must be a list of strings", line=lineno, field="tags")
    return tuple(tags)


def _parse_choices(obj: dict[str, Any], lineno: int) -> tuple[tuple[str, ...], int]:
    """Validate ``choices`` and ``answer`` of a likelihood item.

    Choices must differ even ignoring case: two choices that differ only in
    case would make the exact-match reference ambiguous. They may not start or end with
    whitespace, because the scorer appends each one to the prompt as is.
    """
    choices = obj.get("choices")
    if not isinstance(choices, list) or not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        raise SuiteError(
            f"must be a list of {MIN_CHOICES}..{MAX_CHOICES} strings", line=lineno, field="choices"
        )
    seen: dict[str, int] = {}
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            raise SuiteError(f"choice {i} must be a non-empty string", line=lineno, field="choices")
        if choice != choice.strip():
            raise SuiteError(
                f"choice {i} must not start or end with whitespace", line=lineno, field="choices"
            )
        key = choice.casefold()
        if key in seen:
            message = f"duplicate choice {choice!r} (choices {seen[key]} and {i})"
            raise SuiteError(message, line=lineno, field="choices")
        seen[key] = i
    answer = obj.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        message = f"must be the index of the correct choice, an integer in 0..{len(choices) - 1}"
        raise SuiteError(message, line=lineno, field="answer")
    return tuple(choices), answer


def _parse_likelihood_item(obj: dict[str, Any], lineno: int) -> SuiteItem:
    misplaced = next((key for key in GREEDY_ONLY if key in obj), None)
    if misplaced is not None:
        message = "not allowed in a likelihood item (the correct choice is its reference)"
        raise SuiteError(message, line=lineno, field=misplaced)
    item_id = _item_id(obj, lineno)
    messages = parse_messages(obj, lineno)
    if "choices" not in obj:
        raise SuiteError("is required in a likelihood suite", line=lineno, field="choices")
    if "answer" not in obj:
        raise SuiteError("is required in a likelihood suite", line=lineno, field="answer")
    choices, answer = _parse_choices(obj, lineno)
    tags = _tags(obj, lineno)
    reference = choices[answer]
    verifier = parse_verifier("exact", reference)
    return SuiteItem(item_id, messages, reference, verifier, DEFAULT_MAX_TOKENS, tags, choices, answer)


def _item_id(obj: dict[str, Any], lineno: int) -> str:
    item_id = obj.get("id")
    if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
        raise SuiteError("must be a string of 1..64 characters", line=lineno, field="id")
    return item_id


def _parse_item(obj: dict[str, Any], lineno: int, default_max_tokens: int, scoring: str) -> SuiteItem:
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        allowed = ", ".join(sorted(ITEM_KEYS))
        raise SuiteError(f"unknown key (allowed: {allowed})", line=lineno, field=unknown[0])
    if scoring == "likelihood":
        return _parse_likelihood_item(obj, lineno)
    misplaced = next((key for key in LIKELIHOOD_ONLY if key in obj), None)
    if misplaced is not None:
        message = 'only in likelihood suites (header "scoring": "likelihood")'
        raise SuiteError(message, line=lineno, field=misplaced)
    item_id = _item_id(obj, lineno)
    messages = parse_messages(obj, lineno)
    reference = obj.get("reference")
    if not isinstance(reference, str):
        raise SuiteError("must be a string", line=lineno, field="reference")
    if "verifier" not in obj:
        raise SuiteError("is required", line=lineno, field="verifier")
    try:
        verifier = parse_verifier(obj["verifier"], reference)
    except VerifierError as exc:
        raise SuiteError(str(exc), line=lineno, field=exc.param) from exc
    tags = _tags(obj, lineno)
    max_tokens = _max_tokens(obj.get("max_tokens", default_max_tokens), lineno)
    return SuiteItem(item_id, messages, reference, verifier, max_tokens, tags)


def _parse_header(obj: dict[str, Any], lineno: int) -> dict[str, Any]:
    header = obj["suite"]
    if set(obj) != {"suite"} or not isinstance(header, dict):
        raise SuiteError('a header line is {"suite": {...}} and nothing else', line=lineno, field="suite")
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        allowed = ", ".join(sorted(HEADER_KEYS))
        raise SuiteError(f"unknown header key (allowed: {allowed})", line=lineno, field=unknown[0])
    scoring = header.get("scoring", "greedy")
    if scoring not in SCORING_MODES:
        raise SuiteError(f"must be one of {', '.join(SCORING_MODES)}", line=lineno, field="scoring")
    if "max_tokens" in header:
        if scoring == "likelihood":
            message = "has no meaning in a likelihood suite (nothing is generated)"
            raise SuiteError(message, line=lineno, field="max_tokens")
        _max_tokens(header["max_tokens"], lineno)
    if not all(isinstance(header.get(key, ""), str) for key in ("skill", "description")):
        raise SuiteError("skill and description must be strings", line=lineno, field="suite")
    return header


def _check_identity(name: Any, version: Any, line: int | None) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SuiteError("suite name must match [a-z0-9][a-z0-9_-]* (at most 64)", line=line, field="name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SuiteError("suite version must be an integer >= 1", line=line, field="version")


def parse_suite_jsonl(
    text: str, *, name: str | None = None, version: int | None = None, source: str = "upload"
) -> Suite:
    """Parse and validate a suite file.

    Args:
        text: the JSONL content.
        name: the suite's name; overrides the header's (required if the file has no header name).
        version: the suite's version; overrides the header's (default 1).
        source: where it came from (``builtin:<file>``, a path, ``upload``), kept for display.
    Returns:
        The validated :class:`Suite`.
    Raises:
        SuiteError: naming the line and field of the first problem.
    """
    rows = _rows(text)
    header: dict[str, Any] = {}
    header_line = None
    if rows and "suite" in rows[0][1]:
        header_line, header = rows[0][0], _parse_header(rows[0][1], rows[0][0])
        rows = rows[1:]
    misplaced = next((lineno for lineno, obj in rows if "suite" in obj), None)
    if misplaced is not None:
        raise SuiteError("the header must be the first line", line=misplaced, field="suite")
    name = name if name is not None else header.get("name")
    version = version if version is not None else header.get("version", 1)
    _check_identity(name, version, header_line)
    if not rows:
        raise SuiteError("the suite has no items")
    if len(rows) > MAX_ITEMS:
        raise SuiteError(f"at most {MAX_ITEMS} items per suite")
    default_max_tokens = header.get("max_tokens", DEFAULT_MAX_TOKENS)
    scoring = header.get("scoring", "greedy")
    items, seen = [], {}
    for lineno, obj in rows:
        item = _parse_item(obj, lineno, default_max_tokens, scoring)
        if item.id in seen:
            message = f"duplicate id {item.id!r} (first on line {seen[item.id]})"
            raise SuiteError(message, line=lineno, field="id")
        seen[item.id] = lineno
        items.append(item)
    frozen = tuple(items)
    return Suite(
        name=name,
        version=version,
        skill=header.get("skill") or name,
        items=frozen,
        source=source,
        sha256=_items_sha256(frozen, scoring),
        description=header.get("description", ""),
        scoring=scoring,
    )


def load_suite_file(path: str | Path, *, source: str | None = None) -> Suite:
    """Load one suite file; name and version come from its header or its file name.

    Args:
        path: a ``<name>.v<version>.jsonl`` file (or any file with a header naming the suite).
        source: label kept on the suite (default: the path).
    Returns:
        The validated :class:`Suite`.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    source = source or str(path)
    match = _FILE_NAME.fullmatch(path.name)
    rows = _rows(text)
    header = rows[0][1].get("suite") if rows else None
    if not (isinstance(header, dict) and "name" in header):
        if not match:
            raise SuiteError(f"{path.name}: no header name, and not named <name>.v<version>.jsonl")
        version = int(match["version"])
        return parse_suite_jsonl(text, name=match["name"], version=version, source=source)
    suite = parse_suite_jsonl(text, source=source)
    if match and (suite.name, suite.version) != (match["name"], int(match["version"])):
        raise SuiteError(f"{path.name}: its header says {suite.name} v{suite.version}")
    return suite


def load_builtin_suites(directory: Path = BUILTIN_DIR) -> dict[str, Suite]:
    """The suites shipped with Perennial: the highest version of each name, by name.

    Returns:
        ``{name: Suite}`` in name order.
    """
    latest: dict[str, tuple[int, Path]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        match = _FILE_NAME.fullmatch(path.name)
        if path.name.startswith("probes.") or not match:
            continue
        version = int(match["version"])
        if version > latest.get(match["name"], (0, path))[0]:
            latest[match["name"]] = (version, path)
    return {
        name: load_suite_file(path, source=f"builtin:{path.name}")
        for name, (_, path) in sorted(latest.items())
    }


def load_probes(path: str | Path | None = None) -> list[Probe]:
    """Load probe prompts (``{"id", "messages"}`` per line; ``prompt`` shorthand allowed).

    Args:
        path: a probes JSONL file; default: the shipped ``data/probes.v1.jsonl``.
    Returns:
        The probes in file order (ids unique).
    """
    text = Path(path or BUILTIN_DIR / PROBES_FILE).read_text(encoding="utf-8")
    probes, seen = [], set()
    for lineno, obj in _rows(text):
        probe_id = obj.get("id")
        if not isinstance(probe_id, str) or not probe_id or probe_id in seen:
            raise SuiteError("needs a unique, non-empty string id", line=lineno, field="id")
        seen.add(probe_id)
        extra = {k: v for k, v in obj.items() if k not in {"id", "messages", "prompt"}}
        probes.append(Probe(probe_id, parse_messages(obj, lineno), extra))
    if not probes:
        raise SuiteError("no probes")
    return probes


def trim(suites: Sequence[Suite], max_items: int) -> list[Suite]:
    """Each suite cut to its first ``max_items`` items (0: whole); the cut changes the sha."""
    if not max_items:
        return list(suites)
    return [s if len(s.items) <= max_items else _cut(s, max_items) for s in suites]


def _cut(suite: Suite, n: int, start: int = 0) -> Suite:
    items = tuple(suite.items[start:n])
    return replace(suite, items=items, sha256=_items_sha256(items, suite.scoring))


def split_looks(suites: Sequence[Suite], looks: int) -> list[list[Suite]]:
    """The items each look of a sequential gate adds: look ``j`` holds every suite's ``j``-th
    slice of about ``len(items) / looks`` consecutive items. The first look holds every suite
    (a suite too short for every look skips the last ones).

    A slice is a suite of its own, with its own sha: its scores are cached apart, so a version
    scored at one look is never scored again on the same items at a later one. One look: the
    suites themselves.

    >>> line = '{"id": "i%d", "prompt": "Say hi.", "reference": "hi", "verifier": "contains"}'
    >>> suite = parse_suite_jsonl("\\n".join(line % k for k in range(5)), name="demo", version=1)
    >>> [[len(s.items) for s in look] for look in split_looks([suite], 2)]
    [[3], [2]]
    """
    if looks < 1:
        raise ValueError("looks must be >= 1")
    if looks == 1:
        return [list(suites)]
    out: list[list[Suite]] = [[] for _ in range(looks)]
    for suite in suites:
        n = len(suite.items)
        bounds = [-(-n * j // looks) for j in range(looks + 1)]  # ceil: look 1 gets one at least
        for j in range(looks):
            if bounds[j + 1] > bounds[j]:
                out[j].append(_cut(suite, bounds[j + 1], bounds[j]))
    return out
