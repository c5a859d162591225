"""Parse and load suites and probe prompts (the format is documented in ``evals.suites``).

Pure data handling: no model, no network. Every error in an uploaded file is a
:class:`SuiteError` that names the line and the field, so the admin API can show it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
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
ITEM_KEYS = {"id", "messages", "prompt", "reference", "verifier", "max_tokens", "tags"}
HEADER_KEYS = {"name", "version", "skill", "description", "max_tokens"}
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
    """One prompt with its reference answer and verifier."""

    id: str
    messages: tuple[dict[str, str], ...]
    reference: str
    verifier: Verifier
    max_tokens: int = DEFAULT_MAX_TOKENS
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "messages": [dict(m) for m in self.messages],
            "reference": self.reference,
            "verifier": self.verifier.to_json(),
            "max_tokens": self.max_tokens,
        }
        if self.tags:
            row["tags"] = list(self.tags)
        return row


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of items. ``sha256`` hashes the canonical items only."""

    name: str
    version: int
    skill: str
    items: tuple[SuiteItem, ...]
    source: str
    sha256: str
    description: str = ""

    def to_jsonl(self) -> str:
        """The canonical file text (header + items); parsing it gives the same suite."""
        header = {"name": self.name, "version": self.version, "skill": self.skill}
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


def _items_sha256(items: tuple[SuiteItem, ...]) -> str:
    digest = hashlib.sha256()
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


def _parse_item(obj: dict[str, Any], lineno: int, default_max_tokens: int) -> SuiteItem:
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        allowed = ", ".join(sorted(ITEM_KEYS))
        raise SuiteError(f"unknown key (allowed: {allowed})", line=lineno, field=unknown[0])
    item_id = obj.get("id")
    if not isinstance(item_id, str) or not 1 <= len(item_id) <= 64:
        raise SuiteError("must be a string of 1..64 characters", line=lineno, field="id")
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
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SuiteError("must be a list of strings", line=lineno, field="tags")
    max_tokens = _max_tokens(obj.get("max_tokens", default_max_tokens), lineno)
    return SuiteItem(item_id, messages, reference, verifier, max_tokens, tuple(tags))


def _parse_header(obj: dict[str, Any], lineno: int) -> dict[str, Any]:
    header = obj["suite"]
    if set(obj) != {"suite"} or not isinstance(header, dict):
        raise SuiteError('a header line is {"suite": {...}} and nothing else', line=lineno, field="suite")
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        allowed = ", ".join(sorted(HEADER_KEYS))
        raise SuiteError(f"unknown header key (allowed: {allowed})", line=lineno, field=unknown[0])
    if "max_tokens" in header:
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
    items, seen = [], {}
    for lineno, obj in rows:
        item = _parse_item(obj, lineno, default_max_tokens)
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
        sha256=_items_sha256(frozen),
        description=header.get("description", ""),
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
