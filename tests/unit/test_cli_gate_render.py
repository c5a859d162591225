"""The gate's confidence intervals in ``perennial versions <id>`` and ``perennial rounds show <id>``:
rendered from model objects (and once through the CLI against a FAKE gateway), for a record of
the interval era, one where a suite check failed closed, and older or hand-made decisions."""

from __future__ import annotations

import copy

from click.testing import CliRunner

from clients.models import GateDecision, Round, Version
from clients.render import gate_intervals, run_detail, version_detail
from perennial.cli import main
from tests.support.fake_gateway import Canned, FakeGateway

NO_ENV = {"PERENNIAL_URL": None, "PERENNIAL_ADMIN_KEY": None, "PERENNIAL_API_KEY": None}


def suite_check(suite: str, ref: str, mean: float, low: float, high: float, limit: float, **kw) -> dict:
    return {
        "name": f"suite:{suite}:{ref}",
        "passed": kw.get("passed", low >= limit),
        "value": low,
        "limit": limit,
        "detail": f"suite {suite} vs {ref}: ...",
        "interval": {
            "mean": mean,
            "low": low,
            "high": high,
            "n": 613,
            "confidence": kw.get("confidence", 0.95),
        },
    }


def record(confidence: float = 0.95, max_kl: float | None = None) -> dict:
    """A gate record in the shape learner/round.py stores (the numbers are made up)."""
    kw = {"confidence": confidence}
    return {
        "promote": False,
        "reasons": ["suite reading vs base: -6.1 points ..."],
        "checks": [
            {
                "name": "target_gain",
                "passed": True,
                "value": 0.05,
                "limit": 0.01,
                "detail": "...",
                "interval": None,
            },
            suite_check("factual_qa", "incumbent", -0.004, -0.012, 0.003, -0.03, **kw),
            suite_check("factual_qa", "base", -0.004, -0.012, 0.003, -0.05, **kw),
            suite_check("reading", "incumbent", -0.021, -0.029, -0.0125, -0.03, **kw),
            suite_check("reading", "base", -0.061, -0.0735, -0.049, -0.05, **kw),
            {
                "name": "kl",
                "passed": True,
                "value": 0.0316,
                "limit": max_kl,
                "detail": "...",
                "interval": None,
            },
        ],
        "thresholds": {"min_gain": 0.01, "margin": 0.03, "max_total_drop": 0.05, "confidence": confidence},
        "kl": {"kl": 0.0316},
        "target_kind": "verifier",
        "scores": {
            "candidate": {"target": 0.3, "suites": {"factual_qa": 0.8, "reading": 0.6}},
            "incumbent": {"id": "base", "target": 0.2, "suites": {"factual_qa": 0.804, "reading": 0.621}},
            "base": {"suites": {"factual_qa": 0.804, "reading": 0.661}},
        },
    }


def version(checks, promote: bool = False) -> Version:
    gate = {"promote": promote, "reasons": ["r1"], "checks": checks}
    return Version.model_validate({"id": "v3", "status": "rejected", "parent": "v2", "gate": gate})


def table_lines(text: str) -> list[list[str]]:
    """The interval table's rows (header first), split on the two-space column gaps."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SUITE"))
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("KL"):
            break
        rows.append([c.strip() for c in line.split("  ") if c.strip()])
    return rows


def test_a_decision_with_intervals_renders_the_suite_table_in_points():
    text = version_detail(version(record()))
    assert text.startswith("version")
    assert "\n  - r1\n\n" in text  # the existing text, then the table
    assert table_lines(text) == [
        ["SUITE", "VS BASE (points, 95% CI)", "LIMIT", "VS INCUMBENT (points, 95% CI)", "LIMIT", "PASS"],
        ["factual_qa", "-0.4 [-1.2, +0.3]", "-5.0", "-0.4 [-1.2, +0.3]", "-3.0", "yes"],
        ["reading", "-6.1 [-7.3, -4.9]", "-5.0", "-2.1 [-2.9, -1.2]", "-3.0", "no"],
    ]
    assert text.splitlines()[-1] == "KL(candidate || base)  0.0316 nats/token, reported (not a veto)"
    # The columns line up: every row's second cell starts where its header does.
    lines = [line for line in text.splitlines() if line.startswith(("SUITE", "factual_qa", "reading"))]
    assert len({line.index(word) for line, word in zip(lines, ["VS BASE", "-0.4", "-6.1"], strict=True)}) == 1


def test_the_level_comes_from_the_intervals_and_a_kl_veto_is_named():
    text = version_detail(version(record(confidence=0.9, max_kl=0.05)))
    header = table_lines(text)[0]
    assert header[1] == "VS BASE (points, 90% CI)" and header[3] == "VS INCUMBENT (points, 90% CI)"
    assert text.splitlines()[-1] == "KL(candidate || base)  0.0316 nats/token, veto at 0.05 (passed)"
    assert "97.5% CI" in version_detail(version(record(confidence=0.975)))


def test_a_check_that_failed_closed_shows_a_dash():
    checks = record()
    checks["checks"][1] = {
        "name": "suite:factual_qa:incumbent",
        "passed": False,
        "value": None,
        "limit": -0.03,
        "detail": "suite factual_qa vs incumbent: no incumbent item scores",
        "interval": None,
    }
    rows = table_lines(version_detail(version(checks)))
    assert rows[1] == ["factual_qa", "-0.4 [-1.2, +0.3]", "-5.0", "-", "-3.0", "no"]


def test_run_detail_appends_the_table_after_the_iterations():
    run = Round.model_validate(
        {
            "id": 7,
            "status": "succeeded",
            "decision": "rejected",
            "candidate_version": "v3",
            "iterations": [{"iteration": 0, "fitness_mean": 0.1, "drift": 0.5, "wall_s": 3.0}],
            "gate": {"promote": False, "reasons": ["r1"], "checks": record()},
        }
    )
    text = run_detail(run)
    assert text.index("ITERATION") < text.index("SUITE")
    assert table_lines(text)[1][:2] == ["factual_qa", "-0.4 [-1.2, +0.3]"]
    assert text.splitlines()[-1].startswith("KL(candidate || base)  0.0316")


def test_old_and_hand_made_decisions_still_render():
    old = {  # before intervals: value and limit were scores, the threshold was called tolerance
        "promote": True,
        "reasons": ["all 4 checks passed (1 suites)"],
        "checks": [
            {"name": "target_gain", "passed": True, "value": 0.05, "limit": 0.01, "detail": "..."},
            {
                "name": "suite:arithmetic:incumbent",
                "passed": True,
                "value": 0.6,
                "limit": 0.57,
                "detail": "...",
            },
            {"name": "suite:arithmetic:base", "passed": True, "value": 0.6, "limit": 0.57, "detail": "..."},
            {"name": "kl", "passed": True, "value": 0.01, "limit": 0.05, "detail": "..."},
        ],
        "thresholds": {"min_gain": 0.01, "tolerance": 0.05, "max_total_drop": 0.05, "max_kl": 0.05},
    }
    text = version_detail(version(old, promote=True))
    assert "SUITE" not in text and "gate      pass" in text
    assert text.splitlines()[-1] == "KL(candidate || base)  0.01 nats/token, veto at 0.05 (passed)"
    weird = copy.deepcopy(record())
    weird["checks"][2]["interval"] = {"mean": "x", "low": None}  # not numbers: no interval
    weird["checks"][3]["limit"] = float("nan")
    weird["checks"].append("not a check")
    weird["checks"].append({"name": "suite:odd"})
    rows = table_lines(version_detail(version(weird)))
    assert rows[1] == ["factual_qa", "-", "-5.0", "-0.4 [-1.2, +0.3]", "-3.0", "yes"]
    assert rows[2][:3] == ["reading", "-6.1 [-7.3, -4.9]", "-5.0"] and rows[2][4] == "-"
    for checks in (None, {}, {"checks": None}, {"checks": "x"}, {"promote": True}):
        text = version_detail(version(checks))
        assert "SUITE" not in text and "KL" not in text and text.endswith("  - r1")
    assert version_detail(Version(id="base", status="promoted")).endswith("gate      -")
    # A bare list of checks (a decision recorded by hand): GateDecision types checks as a dict,
    # so only a model built without validation can hold one; it renders all the same.
    bare = GateDecision.model_construct(promote=False, reasons=[], checks=record()["checks"])
    assert len(table_lines(gate_intervals(bare))) == 3
    assert gate_intervals(None) == ""


def test_versions_show_prints_the_table_through_the_cli():
    body = {
        "id": "v3",
        "status": "rejected",
        "parent": "v2",
        "gate": {"promote": False, "reasons": [], "checks": record()},
    }
    with FakeGateway([Canned(200, body)]) as fake:
        result = CliRunner(env=NO_ENV).invoke(
            main, ["versions", "v3", "--url", fake.url, "--admin-key", "pk"]
        )
    assert result.exit_code == 0, result.output
    assert table_lines(result.stdout)[2] == [
        "reading",
        "-6.1 [-7.3, -4.9]",
        "-5.0",
        "-2.1 [-2.9, -1.2]",
        "-3.0",
        "no",
    ]


def test_a_record_from_the_real_gate_renders_its_own_intervals():
    from learner.gate import Scores, Thresholds, decide

    items = {f"q{i}": float(i % 3 != 0) for i in range(60)}
    worse = {k: (0.0 if k in ("q1", "q2", "q4") else v) for k, v in items.items()}
    thresholds = Thresholds(confidence=0.9)
    pool = {f"h{i}": -1.0 - 0.01 * i for i in range(32)}
    decision = decide(
        Scores({k: v + 0.05 + 0.01 * (i % 3) for i, (k, v) in enumerate(pool.items())}, {"qa": worse}, 0.02),
        Scores(pool, {"qa": items}),
        Scores(None, {"qa": items}, 0.0),
        thresholds,
    )
    gate = {**decision.to_json(), "thresholds": thresholds.to_json(), "kl": {"kl": 0.02}}
    ci = next(c for c in gate["checks"] if c["name"] == "suite:qa:base")["interval"]
    rows = table_lines(version_detail(version(gate, promote=decision.promote)))
    cell = f"{100 * ci['mean']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
    assert rows[0][1] == "VS BASE (points, 90% CI)"
    assert rows[1] == ["qa", cell, "-5.0", cell, "-3.0", "yes" if decision.promote else "no"]
    target = next(c for c in gate["checks"] if c["name"] == "target_gain")["interval"]
    line = next(
        ln for ln in version_detail(version(gate, promote=decision.promote)).splitlines() if "target" in ln
    )
    assert line == (
        f"held-out target  {target['mean']:+.4f} nats/token [90% CI {target['low']:+.4f}, "
        f"{target['high']:+.4f}] over 32 items, lower bound > min_gain +0.0000 (passed)"
    )


def test_a_greedy_target_check_reads_in_points():
    checks = record()
    checks["target_kind"] = "greedy"
    ci = {"mean": 0.125, "low": 0.02, "high": 0.23, "n": 48, "confidence": 0.95}
    checks["checks"][0] = {**checks["checks"][0], "interval": ci, "value": 0.02, "limit": 0.0}
    line = next(x for x in version_detail(version(checks)).splitlines() if x.startswith("held-out target"))
    assert (
        line
        == "held-out target  +12.5 points [95% CI +2.0, +23.0] over 48 items, lower bound > min_gain +0.0 (passed)"
    )
    checks["target_kind"] = "likelihood"
    line = next(x for x in version_detail(version(checks)).splitlines() if x.startswith("held-out target"))
    assert "+0.1250 nats/token" in line
