"""Forgetting curves and the summary table of bench/online.py, from its JSON.

    .venv/bin/python bench/online_plot.py [bench/results/online.json]

Writes ``<json>.png`` (per arm: the served version's held-out target and prior-suite scores vs
round, with rejected candidates' suite scores as hollow markers; below, ||theta - theta0|| of
every ES iteration and KL(candidate || base) per round) and ``<json>.md`` (summary table and
per-round tables); returns / prints the markdown. Where the rounds recorded the gate's paired
intervals (candidate - base per suite), the summary gives the served version's lowest lower
bound and the per-round table every candidate's intervals; runs recorded before say n/a.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OVERLAP = "arithmetic"  # the prior suite that shares the target's skill (see bench/online.py)
GOAL_GAIN, GOAL_PRIOR = 10.0, -1.0  # points: the issue's goal for ES+AWD


def pts(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 1)


def _kl_of(rounds: list[dict[str, Any]], version: str) -> float | None:
    return next(
        (r["kl"] for r in rounds if r.get("candidate") == version), 0.0 if version == "base" else None
    )


def base_suites(arm: dict[str, Any]) -> dict[str, float]:
    """The base's suite scores, from the same source as the served versions' (gate or gateway)."""
    return arm.get("base_suites") or arm["base"]["suites"]


def awd_lambda(arm: dict[str, Any]) -> float:
    """The arm's AWD strength (``awd_lambda`` in the round body; ``lambda`` in older runs)."""
    body = arm["settings"]["round_body"]
    return body.get("awd_lambda", body.get("lambda", 0.0))


def served_suites(record: dict[str, Any]) -> dict[str, float]:
    return record.get("served_suites", record["served_measure"]["suites"])


def served_intervals(arm: dict[str, Any], version: str) -> dict[str, dict[str, float]] | None:
    """The gate's paired intervals of ``version`` - base per suite (from the round that judged it;
    the base against itself is 0 everywhere); None where the records hold none (runs recorded
    before the gate stored intervals)."""
    if version == "base":
        zero = {"mean": 0.0, "low": 0.0, "high": 0.0}
        return {s: zero for s in base_suites(arm)}
    found = next((r.get("gate_intervals") for r in arm["rounds"] if r.get("candidate") == version), None)
    return found or None


def lowest_bound(intervals: dict[str, dict[str, float]] | None) -> tuple[float, str] | None:
    """(lowest lower bound in points, its suite), or None."""
    if not intervals:
        return None
    suite = min(intervals, key=lambda s: intervals[s]["low"])
    return pts(intervals[suite]["low"]), suite


def disagreement(arm: dict[str, Any]) -> float | None:
    """Largest |served measurement - gate score| in points over suites scored both ways on the
    same weights (the base; promoted candidates): the measurement noise floor. Greedy answers on
    near-ties flip with the batch a request lands in (two engines, different concurrency)."""
    rounds, pairs = arm["rounds"], []
    gate_base = next((r["gate_suites"]["base"] for r in rounds if r["gate_suites"]["base"]), {})
    pairs += [(arm["base"]["suites"].get(s), v) for s, v in gate_base.items()]
    for r in rounds:
        if r["decision"] == "promoted":
            pairs += [
                (r["served_measure"]["suites"].get(s), v) for s, v in r["gate_suites"]["candidate"].items()
            ]
    gaps = [abs(pts(a - b)) for a, b in pairs if a is not None]
    return max(gaps) if gaps else None


def summarize(arm: dict[str, Any]) -> dict[str, Any]:
    """One arm's outcome in points: target gain, per-suite change of the served version, worst
    served and worst candidate suite change over all rounds, decisions, drift, KL."""
    base, rounds, b_suites = arm["base"], arm["rounds"], base_suites(arm)
    final = rounds[-1]["served_measure"] if rounds else base
    final_suites = served_suites(rounds[-1]) if rounds else b_suites
    delta = {s: pts(final_suites[s] - b) if s in final_suites else None for s, b in b_suites.items()}
    served_worst = min(
        (pts(served_suites(r)[s] - b) for r in rounds for s, b in b_suites.items() if s in served_suites(r)),
        default=0.0,
    )
    cand = [
        pts(v - r["gate_suites"]["base"][s])
        for r in rounds
        for s, v in r["gate_suites"]["candidate"].items()
        if s in r["gate_suites"]["base"]
    ]
    gain = pts(final["target"] - base["target"])
    others = [d for s, d in delta.items() if s != OVERLAP]
    met = lambda ds: gain >= GOAL_GAIN and all(d is not None and d >= GOAL_PRIOR for d in ds)  # noqa: E731
    served = rounds[-1]["served"] if rounds else "base"
    intervals = served_intervals(arm, served)
    lowest = lowest_bound(intervals)
    return {
        "rounds": len(rounds),
        "stopped": arm.get("stopped"),
        "promoted": sum(r["decision"] == "promoted" for r in rounds),
        "rejected": sum(r["decision"] == "rejected" for r in rounds),
        "failed": sum(r["status"] == "failed" for r in rounds),
        "target_base": pts(base["target"]),
        "target_final": pts(final["target"]),
        "target_gain": gain,
        "target_exact_base": pts(base["target_exact"]),
        "target_exact_final": pts(final["target_exact"]),
        "prior_delta": delta,
        "served_worst_prior_delta": served_worst,
        "candidate_worst_prior_delta": min(cand) if cand else None,
        "served": served,
        "served_drift": rounds[-1]["served_drift"] if rounds else 0.0,
        "served_kl": _kl_of(rounds, served),
        "served_intervals": intervals,
        "served_lowest_bound": lowest,
        # the goal on intervals: gain >= 10 points and every suite's lower bound (served - base) >= -1
        "goal_met_on_intervals": None if lowest is None else gain >= GOAL_GAIN and lowest[0] >= GOAL_PRIOR,
        "goal_met": met(delta.values()),
        "goal_met_excluding_overlap": met(others),
        "same_weights_disagreement": disagreement(arm),
        "minutes": round(arm["elapsed_s"] / 60, 1),
    }


def measured(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The arms that got as far as measuring their base (a failed start has nothing to show)."""
    return {name: arm for name, arm in results["arms"].items() if "base" in arm and "settings" in arm}


def num(x: Any, spec: str = "+.1f") -> str:
    """A table cell: ``x`` formatted, or n/a."""
    return "n/a" if x is None else format(x, spec)


def table(results: dict[str, Any]) -> str:
    """The summary table (markdown), one row per arm, numbers in points (0-100)."""
    arms = measured(results)
    suites = sorted(base_suites(next(iter(arms.values())))) if arms else []
    head = [
        "arm",
        "AWD lambda",
        "gate",
        "rounds (promoted / rejected / failed)",
        "target base -> served (gain)",
        *[f"{s} {'(overlap) ' if s == OVERLAP else ''}change" for s in suites],
        "served - base, lowest 95% CI bound (suite)",
        "worst served prior change",
        "worst candidate prior change",
        "KL(served ‖ base)",
        "‖θ − θ0‖ served",
        "gate vs served, same weights (max abs diff)",
        "minutes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, arm in arms.items():
        s = summarize(arm)
        row = [
            name,
            num(awd_lambda(arm), "g"),
            "on" if arm["settings"]["gate"] else "off",
            f"{s['rounds']} ({s['promoted']} / {s['rejected']} / {s['failed']})",
            f"{s['target_base']:.1f} -> {s['target_final']:.1f} ({s['target_gain']:+.1f})",
            *[num(s["prior_delta"][x]) for x in suites],
            "n/a" if s["served_lowest_bound"] is None else "{:+.1f} ({})".format(*s["served_lowest_bound"]),
            num(s["served_worst_prior_delta"]),
            num(s["candidate_worst_prior_delta"]),
            num(s["served_kl"], ".4f"),
            num(s["served_drift"], ".2f"),
            num(s["same_weights_disagreement"], ".1f"),
            f"{s['minutes']:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def round_table(name: str, arm: dict[str, Any]) -> str:
    head = (
        "| round | decision | candidate | gate target (incumbent -> candidate) | served | served target | "
        "served suites | candidate - base, points [95% CI] | KL(cand ‖ base) | ‖θ − θ0‖ cand | minutes | reasons |"
    )
    lines = [f"### {name}", "", head, "|" + "---|" * 12]
    lines.append(
        f"| 0 | - | - | - | base | {arm['base']['target']:.3f} | "
        f"{', '.join(f'{k} {v:.3f}' for k, v in base_suites(arm).items())} | - | 0 | 0 | - | - |"
    )
    for r in arm["rounds"]:
        m, gt = r["served_measure"], r["gate_target"]
        reasons = (
            "; ".join(r.get("reasons") or [r.get("error") or ""])[:300].replace("||", "‖").replace("|", "/")
        )
        lines.append(
            f"| {r['round']} | {r['decision'] or r['status']} | {r['candidate']} | {num(gt['incumbent'], '.3f')} -> "
            f"{num(gt['candidate'], '.3f')} | {r['served']} | {m['target']:.3f} | "
            f"{', '.join(f'{k} {v:.3f}' for k, v in served_suites(r).items())} | {intervals_cell(r)} | "
            f"{num(r['kl'], '.4f')} | "
            f"{num(r['candidate_drift'], '.2f')} | {r['wall_s'] / 60:.1f} | {reasons} |"
        )
    return "\n".join(lines)


def intervals_cell(record: dict[str, Any]) -> str:
    found = record.get("gate_intervals") or {}
    if not found:
        return "n/a"
    return ", ".join(
        f"{s} {100 * i['mean']:+.1f} [{100 * i['low']:+.1f}, {100 * i['high']:+.1f}]"
        for s, i in found.items()
    )


def _scores_axis(ax, name: str, arm: dict[str, Any]) -> None:
    rounds = arm["rounds"]
    measures = [arm["base"], *[r["served_measure"] for r in rounds]]
    suites = [base_suites(arm), *[served_suites(r) for r in rounds]]
    xs = list(range(len(measures)))
    ax.plot(xs, [100 * m["target"] for m in measures], "k-o", lw=2.5, label="target (held-out addition)")
    for i, suite in enumerate(sorted(suites[0])):
        color = f"C{i}"
        ys = [100 * s[suite] if suite in s else float("nan") for s in suites]
        ax.plot(xs, ys, "-o", color=color, ms=4, label=suite)
        rejected = [
            (r["round"], 100 * r["gate_suites"]["candidate"][suite])
            for r in rounds
            if r["decision"] == "rejected" and suite in r["gate_suites"]["candidate"]
        ]
        if rejected:
            ax.plot(*zip(*rejected, strict=True), "o", mfc="none", color=color, ms=8)
    for r in rounds:
        if r["decision"] == "rejected":
            ax.axvspan(r["round"] - 0.15, r["round"] + 0.15, color="red", alpha=0.08)
    gate = "gate on" if arm["settings"]["gate"] else "gate off"
    ax.set(
        title=f"{name} (lambda {awd_lambda(arm):g}, {gate})",
        xlabel="round",
        ylabel="served score (points)",
        xticks=xs,
        ylim=(0, 100),
    )
    ax.grid(alpha=0.3)


def _drift_axis(ax, arm: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    offset, parent_drift, kl_x, kl_y = 0, 0.0, [], []
    for r in arm["rounds"]:
        its = r["iterations"] or []
        xs = [offset] + [offset + it["iteration"] + 1 for it in its]
        ys = [parent_drift] + [it["drift"] for it in its]
        style = "b-" if r["decision"] == "promoted" else "r:"
        ax.plot(xs, ys, style, marker=".", lw=1.5)
        offset += len(its)
        if r["kl"] is not None:
            kl_x.append(offset)
            kl_y.append(r["kl"])
        parent_drift = r["served_drift"] if r["served_drift"] is not None else parent_drift
    ax.set(xlabel="ES iteration (all rounds; red dotted: rejected)", ylabel="||theta - theta0||")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if kl_x:
        twin = ax.twinx()
        twin.plot(kl_x, kl_y, "gs", label="KL(candidate || base)")
        limit = next((r["thresholds"]["max_kl"] for r in arm["rounds"] if r.get("thresholds")), None)
        if arm["settings"]["gate"] and limit is not None:
            twin.axhline(limit, color="g", ls="--", lw=0.8)  # the gate's max_kl
        twin.set_ylim(bottom=0)
        twin.set_ylabel("KL(candidate || base), nats/token (dashed: max_kl)", color="g")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = measured(results)
    fig, axes = plt.subplots(2, max(1, len(arms)), figsize=(max(8.0, 5.2 * len(arms)), 8), squeeze=False)
    for col, (name, arm) in enumerate(arms.items()):
        _scores_axis(axes[0][col], name, arm)
        _drift_axis(axes[1][col], arm)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Learning without forgetting through the public API (hollow: rejected candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: dict[str, Any], png: Path, md: Path) -> str:
    """Write the PNG and the markdown file; return the summary table."""
    summary = table(results)
    plot(results, png)
    rounds = "\n\n".join(round_table(n, a) for n, a in measured(results).items())
    source = {
        "gate": "the gate's scores (learner engine, the same weights)",
        "gateway": "measured through the gateway",
    }.get(results["settings"].get("served_suites", "gateway"))
    md.write_text(
        f"## Summary (points, 0-100)\n\n{summary}\n\nTarget: measured through the gateway on "
        f"held-out items. Prior suites of served versions: {source}.\n\n"
        f"Command: `{results.get('command', '')}`\n\n## Rounds\n\n{rounds}\n"
    )
    return summary


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "online.json"
    results = json.loads(path.read_text())
    print(render(results, path.with_suffix(".png"), path.with_suffix(".md")))


if __name__ == "__main__":
    main()
