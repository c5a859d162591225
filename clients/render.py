"""Human-readable output of the CLI client commands: aligned tables and short values.

``--json`` output does not come through here: it prints the SDK's models as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from clients.models import GateDecision, Round, Version

MAX_CELL = 60


def cell(value: Any, width: int = MAX_CELL) -> str:
    """One table cell: '-' for None, short floats, ISO times to the second, cut to ``width``."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, values[-1]]).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def gate_summary(gate: GateDecision | None) -> str:
    if gate is None:
        return "-"
    verdict = "pass" if gate.promote else "fail"
    return f"{verdict}: {'; '.join(map(str, gate.reasons))}" if gate.reasons else verdict


def versions_table(versions: Sequence[Version]) -> str:
    rows = [
        ["*" if v.serving else "", v.id, v.status, v.parent, gate_summary(v.gate), v.created_at]
        for v in versions
    ]
    return table(["", "VERSION", "STATUS", "PARENT", "GATE", "CREATED"], rows)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {cell(v, 200)}" for k, v in pairs)


def version_detail(v: Version) -> str:
    text = key_values(
        [
            ("version", v.id),
            ("status", v.status),
            ("serving", v.serving),
            ("parent", v.parent),
            ("created", v.created_at),
            ("promoted", v.promoted_at),
            ("served", v.served_at),
            ("sha256", v.sha256),
            ("snapshot", v.snapshot_path),
            ("metrics", v.metrics),
            ("gate", "pass" if v.gate and v.gate.promote else "fail" if v.gate else None),
        ]
    )
    reasons = v.gate.reasons if v.gate else []
    return text + "".join(f"\n  - {r}" for r in reasons)


def progress_text(run: Round) -> str:
    total = run.iterations_total
    its = f" iteration {run.iterations_done}/{total}" if total and run.phase == "es" else ""
    return f"round {run.id}: {run.phase}{its}"


def runs_table(runs: Sequence[Round]) -> str:
    rows = [
        [
            r.id,
            r.status,
            r.decision,
            r.trigger,
            r.parent_version,
            r.candidate_version,
            r.seconds,
            r.created_at,
            r.error or gate_summary(r.gate),
        ]
        for r in runs
    ]
    headers = [
        "ROUND",
        "STATUS",
        "DECISION",
        "TRIGGER",
        "PARENT",
        "CANDIDATE",
        "SECONDS",
        "CREATED",
        "GATE / ERROR",
    ]
    return table(headers, rows)


ITERATION_COLUMNS = (
    "iteration",
    "fitness_mean",
    "fitness_max",
    "target_score",
    "update_norm",
    "drift",
    "wall_s",
)


def run_detail(run: Round) -> str:
    text = key_values(
        [
            ("round", run.id),
            ("status", run.status),
            ("phase", run.phase),
            ("decision", run.decision),
            ("trigger", run.trigger),
            ("parent", run.parent_version),
            ("candidate", run.candidate_version),
            ("overrides", run.overrides),
            ("feedback", run.feedback),
            ("created", run.created_at),
            ("started", run.started_at),
            ("finished", run.finished_at),
            ("seconds", run.seconds),
            ("error", run.error),
            ("gate", gate_summary(run.gate)),
        ]
    )
    if run.iterations:
        rows = [[it.get(c) for c in ITERATION_COLUMNS] for it in run.iterations]
        text += "\n\n" + table([c.upper() for c in ITERATION_COLUMNS], rows)
    return text


def as_json(value: Any) -> str:
    """``--json`` output: models as their JSON, lists of them as JSON arrays."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    if isinstance(value, list):
        items = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        return json.dumps(items, indent=2)
    return json.dumps(value, indent=2, default=str)
