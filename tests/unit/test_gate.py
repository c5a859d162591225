"""Table tests of the promotion gate (learner.gate.decide): pure, no engine."""

from __future__ import annotations

import json
import math

import pytest

from learner.gate import Decision, Scores, Thresholds, decide

BASE = Scores(target=0.40, suites={"qa": 0.80, "math": 0.50}, kl=0.0)
INCUMBENT = Scores(target=0.50, suites={"qa": 0.80, "math": 0.52}, kl=0.01)
# explicit, so the table does not move when the documented defaults are retuned
T = Thresholds(min_gain=0.01, tolerance=0.03, max_total_drop=0.05, max_kl=0.05)


def cand(target=0.60, qa=0.80, math_=0.52, kl=0.01, **extra) -> Scores:
    suites = {"qa": qa, "math": math_, **extra}
    return Scores(target=target, suites={k: v for k, v in suites.items() if v is not None}, kl=kl)


# (row id, candidate, incumbent, base, thresholds, promote, names of the failed checks)
ROWS = [
    ("pass", cand(), INCUMBENT, BASE, T, True, set()),
    (
        "pass-first-round-incumbent-is-base",
        cand(target=0.45, qa=0.78, math_=0.49),
        BASE,
        BASE,
        T,
        True,
        set(),
    ),
    ("gain-too-small", cand(target=0.505), INCUMBENT, BASE, T, False, {"target_gain"}),
    ("gain-negative", cand(target=0.30), INCUMBENT, BASE, T, False, {"target_gain"}),
    ("gain-zero-fails-default", cand(target=0.50), INCUMBENT, BASE, T, False, {"target_gain"}),
    (
        "gain-zero-passes-min-gain-0",
        cand(target=0.50),
        INCUMBENT,
        BASE,
        Thresholds(min_gain=0.0),
        True,
        set(),
    ),
    # 0.57 - 0.56 is 0.009999999999999898 in floats: equality must still pass
    ("gain-equal-min-gain", cand(target=0.57), Scores(0.56, INCUMBENT.suites, 0.0), BASE, T, True, set()),
    ("suite-below-incumbent", cand(qa=0.76), INCUMBENT, BASE, T, False, {"suite:qa:incumbent"}),
    ("suite-equal-incumbent-minus-tol", cand(qa=0.77), INCUMBENT, BASE, T, True, set()),
    (
        "suite-just-below-incumbent-minus-tol",
        cand(qa=0.7699),
        INCUMBENT,
        BASE,
        T,
        False,
        {"suite:qa:incumbent"},
    ),
    ("suite-above-incumbent", cand(qa=0.95), INCUMBENT, BASE, T, True, set()),
    (
        "suite-below-base-only",  # within tolerance of an incumbent that already dropped
        cand(qa=0.745),
        Scores(0.50, {"qa": 0.77, "math": 0.52}),
        BASE,
        T,
        False,
        {"suite:qa:base"},
    ),
    (
        "suite-equal-base-minus-drop",
        cand(qa=0.75),
        Scores(0.50, {"qa": 0.77, "math": 0.52}),
        BASE,
        T,
        True,
        set(),
    ),
    (
        "suite-below-both",
        cand(math_=0.40),
        INCUMBENT,
        BASE,
        T,
        False,
        {"suite:math:incumbent", "suite:math:base"},
    ),
    ("kl-too-high", cand(kl=0.06), INCUMBENT, BASE, T, False, {"kl"}),
    ("kl-equal-max", cand(kl=0.05), INCUMBENT, BASE, T, True, set()),
    ("kl-nan", cand(kl=math.nan), INCUMBENT, BASE, T, False, {"kl"}),
    ("kl-missing", cand(kl=None), INCUMBENT, BASE, T, False, {"kl"}),
    ("kl-inf", cand(kl=math.inf), INCUMBENT, BASE, T, False, {"kl"}),
    (
        "candidate-missing-suite",
        cand(math_=None),
        INCUMBENT,
        BASE,
        T,
        False,
        {"suite:math:incumbent", "suite:math:base"},
    ),
    (
        "candidate-suite-nan",
        cand(qa=math.nan),
        INCUMBENT,
        BASE,
        T,
        False,
        {"suite:qa:incumbent", "suite:qa:base"},
    ),
    (
        "incumbent-missing-new-suite",
        cand(fmt=0.3),
        INCUMBENT,
        Scores(0.4, {**BASE.suites, "fmt": 0.3}, 0.0),
        T,
        False,
        {"suite:fmt:incumbent"},
    ),
    (
        "base-missing-suite",
        cand(fmt=0.3),
        Scores(0.5, {**INCUMBENT.suites, "fmt": 0.3}),
        BASE,
        T,
        False,
        {"suite:fmt:base"},
    ),
    ("target-missing", cand(target=None), INCUMBENT, BASE, T, False, {"target_gain"}),
    ("incumbent-target-missing", cand(), Scores(None, INCUMBENT.suites), BASE, T, False, {"target_gain"}),
    (
        "several-failures",
        cand(target=0.45, qa=0.60, kl=0.2),
        INCUMBENT,
        BASE,
        T,
        False,
        {"target_gain", "suite:qa:incumbent", "suite:qa:base", "kl"},
    ),
    ("no-suites-at-all", Scores(0.6, {}, 0.0), Scores(0.5, {}), Scores(0.4, {}, 0.0), T, False, {"suites"}),
    (
        "strict-thresholds",
        cand(qa=0.79),
        INCUMBENT,
        BASE,
        Thresholds(tolerance=0.0),
        False,
        {"suite:qa:incumbent"},
    ),
    ("loose-thresholds", cand(qa=0.60, kl=0.5), INCUMBENT, BASE, Thresholds(0.0, 0.5, 0.5, 1.0), True, set()),
]


@pytest.mark.parametrize(
    "candidate,incumbent,base,thresholds,promote,failed", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_gate_table(candidate, incumbent, base, thresholds, promote, failed):
    decision = decide(candidate, incumbent, base, thresholds)
    assert decision.promote is promote
    assert {c.name for c in decision.checks if not c.passed} == failed
    if promote:
        assert decision.reasons[0].startswith("all ") and "passed" in decision.reasons[0]
    else:
        # one human-readable reason per failed check, in check order
        assert decision.reasons == [c.detail for c in decision.checks if not c.passed]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_decision_is_strict_json(row):
    decision = decide(*row[1:5])
    text = json.dumps(decision.to_json(), allow_nan=False)
    back = json.loads(text)
    assert back["promote"] == decision.promote
    assert [c["name"] for c in back["checks"]] == [c.name for c in decision.checks]


def test_every_suite_of_any_side_is_checked_against_both_references():
    decision = decide(cand(), INCUMBENT, BASE, T)
    names = [c.name for c in decision.checks]
    assert names == [
        "target_gain",
        "suite:math:incumbent",
        "suite:math:base",
        "suite:qa:incumbent",
        "suite:qa:base",
        "kl",
    ]


def test_reasons_name_the_numbers():
    decision = decide(cand(qa=0.70, kl=0.2), INCUMBENT, BASE, T)
    text = " | ".join(decision.reasons)
    assert "suite qa vs incumbent: 0.7000 < 0.7700" in text
    assert "suite qa vs base: 0.7000 < 0.7500" in text
    assert "KL(candidate || base) 0.2000" in text and "max_kl 0.0500" in text


def test_decide_is_pure_and_deterministic():
    c = cand(qa=0.70)
    before = (dict(c.suites), dict(INCUMBENT.suites), dict(BASE.suites))
    first, second = decide(c, INCUMBENT, BASE, T), decide(c, INCUMBENT, BASE, T)
    assert isinstance(first, Decision) and first == second
    assert (dict(c.suites), dict(INCUMBENT.suites), dict(BASE.suites)) == before


def test_default_thresholds_are_coherent_and_serialise():
    t = Thresholds()
    assert json.loads(json.dumps(t.to_json())) == t.to_json()
    assert set(t.to_json()) == {"min_gain", "tolerance", "max_total_drop", "max_kl"}
    assert t.min_gain > 0  # a tie never pays for the drift
    assert 0 < t.tolerance <= t.max_total_drop < 1
    assert t.max_kl > 0
    # the base itself, as a candidate against itself with a gain, passes the defaults
    base = Scores(0.4, {"qa": 0.8}, 0.0)
    assert decide(Scores(0.5, {"qa": 0.8}, 0.0), base, base, t).promote
