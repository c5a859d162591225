"""Human-readable output of the CLI client commands: aligned tables and short values.

``--json`` output does not come through here: it prints the SDK's models as they are.
"""

from __future__ import annotations

import json
import math
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


def feedback_line(run: Round) -> str | None:
    """``40 read, 12 used from 3 callers; skipped: no_signal 20, over_caller_cap 8``."""
    f = (run.metrics or {}).get("feedback")
    if not isinstance(f, dict):
        return None
    skipped = ", ".join(f"{reason} {n}" for reason, n in (f.get("skipped") or {}).items())
    used = f"{f.get('read')} read, {f.get('used')} used from {f.get('callers')} caller(s)"
    return f"{used}; skipped: {skipped}" if skipped else used


def disk_cell(v: Version) -> str | None:
    """``517 MB`` for stored weights, ``seed log 2.1 kB`` once the snapshot was dropped."""
    disk = v.disk or {}
    if disk.get("stored"):
        return f"{disk['weights_bytes'] / 1e6:.0f} MB"
    if disk.get("seed_log_bytes") is not None:
        return f"seed log {disk['seed_log_bytes'] / 1e3:.1f} kB"
    return None


def versions_table(versions: Sequence[Version]) -> str:
    rows = [
        ["*" if v.serving else "", v.id, v.status, v.parent, gate_summary(v.gate), v.created_at, disk_cell(v)]
        for v in versions
    ]
    return table(["", "VERSION", "STATUS", "PARENT", "GATE", "CREATED", "DISK"], rows)


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
            ("disk", disk_cell(v)),
            ("metrics", v.metrics),
            ("gate", "pass" if v.gate and v.gate.promote else "fail" if v.gate else None),
        ]
    )
    reasons = v.gate.reasons if v.gate else []
    return text + "".join(f"\n  - {r}" for r in reasons) + gate_intervals(v.gate)


# ---- the gate's intervals -----------------------------------------------------------------------
# A round stores the whole gate record (learner/round.py: decide() + thresholds + KL + scores) as
# the decision's checks; a suite check ``suite:<name>:<incumbent|base>`` holds the paired interval
# of candidate - reference (fractions; shown as points). Older records have suite checks without
# an ``interval`` key (their value and limit were scores, not differences): no table for them. A
# decision recorded by hand may hold a bare list of checks, or nothing. Parsed here as plain JSON:
# clients may not import the learner.


def _number(x: Any) -> float | None:
    """A finite number, or None (JSON may hold null, strings, bools or nothing)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def gate_checks(gate: GateDecision | None) -> list[dict[str, Any]]:
    """The decision's check rows (dicts with a name), whichever shape the record has."""
    record = gate.checks if gate is not None else None
    rows = record.get("checks") if isinstance(record, dict) else record
    if not isinstance(rows, list):
        return []
    return [c for c in rows if isinstance(c, dict) and isinstance(c.get("name"), str)]


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _level(confidence: Any) -> str:
    """0.95 -> '95%', 0.975 -> '97.5%'; '' when unknown."""
    c = _number(confidence)
    if c is None or not 0 < c < 1:
        return ""
    return f"{float(f'{100 * c:.1f}'):g}%"


def _interval(check: dict[str, Any] | None) -> tuple[float, float, float, str] | None:
    """(mean, low, high, level) of a suite check's interval, or None without a usable one."""
    ci = check.get("interval") if check else None
    if not isinstance(ci, dict):
        return None
    mean, low, high = (_number(ci.get(k)) for k in ("mean", "low", "high"))
    if mean is None or low is None or high is None:
        return None
    return mean, low, high, _level(ci.get("confidence"))


def _ci_cell(check: dict[str, Any] | None) -> str:
    ci = _interval(check)
    return "-" if ci is None else f"{_points(ci[0])} [{_points(ci[1])}, {_points(ci[2])}]"


def _limit_cell(check: dict[str, Any] | None) -> str:
    limit = _number(check.get("limit")) if check else None
    return "-" if limit is None else _points(limit)


def suite_interval_rows(gate: GateDecision | None) -> tuple[str, list[list[str]]]:
    """(confidence label, one row per suite: name, vs base, limit, vs incumbent, limit, pass).

    Only suite checks of the interval era count (an ``interval`` key, possibly null: a check
    that failed closed); no rows when there are none.
    """
    suites: dict[str, dict[str, dict[str, Any]]] = {}
    for c in gate_checks(gate):
        name = c["name"]
        if not name.startswith("suite:") or "interval" not in c:
            continue
        suite, _, ref = name[len("suite:") :].rpartition(":")
        if suite and ref in ("base", "incumbent"):
            suites.setdefault(suite, {})[ref] = c
    levels = {ci[3] for refs in suites.values() for c in refs.values() if (ci := _interval(c)) and ci[3]}
    label = f"{levels.pop()} CI" if len(levels) == 1 else "CI"
    rows = []
    for suite, refs in suites.items():
        base, inc = refs.get("base"), refs.get("incumbent")
        passed = all(c.get("passed") is True for c in refs.values())
        rows.append(
            [
                suite,
                _ci_cell(base),
                _limit_cell(base),
                _ci_cell(inc),
                _limit_cell(inc),
                "yes" if passed else "no",
            ]
        )
    return label, rows


def target_line(gate: GateDecision | None) -> str | None:
    """The held-out target check's paired interval (candidate - incumbent; nats/token, or points when
    the gate scored the pool greedy), if it has one."""
    check = next((c for c in gate_checks(gate) if c["name"] == "target_gain"), None)
    ci = _interval(check)
    if check is None or ci is None:
        return None
    n = _number((check.get("interval") or {}).get("n"))
    limit = _number(check.get("limit"))
    over = f" over {n:.0f} items" if n is not None else ""
    bound = f", lower bound > min_gain {limit:+.4f}" if limit is not None else ""
    verdict = "passed" if check.get("passed") is True else "failed"
    record = gate.checks if gate is not None else None
    if isinstance(record, dict) and record.get("target_kind") == "greedy":  # verifier scores: points
        bound = f", lower bound > min_gain {_points(limit)}" if limit is not None else ""
        return (
            f"held-out target  {_points(ci[0])} points [{ci[3] or ''} CI {_points(ci[1])}, {_points(ci[2])}]"
            f"{over}{bound} ({verdict})"
        ).replace("[ CI", "[CI")
    return (
        f"held-out target  {ci[0]:+.4f} nats/token [{ci[3] or ''} CI {ci[1]:+.4f}, {ci[2]:+.4f}]"
        f"{over}{bound} ({verdict})"
    ).replace("[ CI", "[CI")


def kl_line(gate: GateDecision | None) -> str | None:
    """KL(candidate || base) as the gate's ``kl`` check saw it: reported only, or a veto."""
    check = next((c for c in gate_checks(gate) if c["name"] == "kl"), None)
    if check is None:
        return None
    value, limit = _number(check.get("value")), _number(check.get("limit"))
    shown = "-" if value is None else f"{value:.4g} nats/token"
    if limit is None:
        return f"KL(candidate || base)  {shown}, reported (not a veto)"
    verdict = "passed" if check.get("passed") is True else "failed"
    return f"KL(candidate || base)  {shown}, veto at {limit:.4g} ({verdict})"


def gate_intervals(gate: GateDecision | None) -> str:
    """The held-out target's interval, the per-suite interval table and the KL line, each after a
    blank line; '' if none."""
    label, rows = suite_interval_rows(gate)
    target = target_line(gate)
    text = "\n\n" + target if target else ""
    if rows:
        headers = [
            "SUITE",
            f"VS BASE (points, {label})",
            "LIMIT",
            f"VS INCUMBENT (points, {label})",
            "LIMIT",
            "PASS",
        ]
        text += "\n\n" + table(headers, rows)
    kl = kl_line(gate)
    if kl:
        text += ("\n" if rows else "\n\n") + kl
    return text


def progress_text(run: Round) -> str:
    total = run.iterations_total
    its = f" iteration {run.iterations_done}/{total}" if total and run.phase == "es" else ""
    return f"round {run.id}: {run.phase}{its}"


def rounds_table(rounds: Sequence[Round]) -> str:
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
            r.error
            or (
                f"no usable feedback: {feedback_line(r)}" if r.decision == "skipped" else gate_summary(r.gate)
            ),
        ]
        for r in rounds
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
            ("items", feedback_line(run)),
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
    return text + gate_intervals(run.gate)


def as_json(value: Any) -> str:
    """``--json`` output: models as their JSON, lists of them as JSON arrays."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    if isinstance(value, list):
        items = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        return json.dumps(items, indent=2)
    return json.dumps(value, indent=2, default=str)
