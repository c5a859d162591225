"""The promotion gate: one pure function from scores to a decision with reasons.

A candidate is promoted only if every check passes:

* ``target_gain``: held-out target score of the candidate minus the incumbent's >= ``min_gain``;
* for every suite scored for any of the three models:
  ``suite:<name>:incumbent``: candidate >= incumbent - ``tolerance``, and
  ``suite:<name>:base``: candidate >= base - ``max_total_drop`` (the cap on drift accumulated
  over successive promotions, each within ``tolerance``);
* ``kl``: mean per-token KL(candidate || base) on the probe prompts <= ``max_kl``.

Missing or non-finite numbers fail closed, and so does a decision without any suite: a suite
the candidate was not scored on, an incumbent or base score that is absent, a NaN KL.
Comparisons allow ``EPS`` so that a value exactly at a threshold passes despite float rounding
(0.57 - 0.56 is 0.009999999999999898).

>>> base = Scores(target=0.5, suites={"qa": 0.8}, kl=0.0)
>>> decide(Scores(0.6, {"qa": 0.79}, 0.01), base, base, Thresholds()).promote
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

EPS = 1e-9


@dataclass(frozen=True)
class Thresholds:
    """Gate thresholds (scores are fractions in [0, 1]; KL in nats per token).

    Defaults, and the measurements behind them (``bench/suite_baseline.py``: the base plus
    isotropic weight noise of RMS s, scored on the shipped suites, KL on 32 probes x 2 samples;
    numbers in ``bench/results/suite_baseline.json``, "drift_calibration"):

    ==========  ===========  ==========  =====================================================
    noise RMS   ||noise||_2  KL (nats)   suite changes vs base (points)
    ==========  ===========  ==========  =====================================================
    5e-4        5.8          0.0006      factual -4.7, format +1.9, others 0
    1e-3        11.6         0.0035      reading -5.6, factual -4.7, arithmetic -2.4
    2e-3        23.2         0.010       reading -8.3, arithmetic -4.8, factual -4.7, format -1.9
    4e-3        46.4         0.043       reading -16.7, format -5.7, arithmetic -4.8, factual -6.3
    ==========  ===========  ==========  =====================================================

    * ``min_gain = 0.01``: demand a real held-out improvement. Every promotion moves the model
      away from the base, so a candidate that only ties the incumbent is not worth its drift.
    * ``tolerance = 0.05``: greedy answers sit on near-ties, so even noise too small to move the
      KL (0.0006 +- 0.0007) flipped 3 of 64 factual items (-4.7 points). A tolerance under that
      rejects candidates for flip noise, not forgetting; 0.05 (2 items of a 36-42 item suite,
      3 of 64) passes that level and rejects the RMS 1e-3 noise (reading -5.6).
    * ``max_total_drop = 0.07``: the cap below the base however many promotions led there
      (without it, per-round tolerance compounds); about one more item per suite than
      ``tolerance``.
    * ``max_kl = 0.02``: twice the KL of the noise level (RMS 2e-3) at which three of four
      suites had already fallen, and several standard errors (0.004-0.008 at these levels)
      above 0. The suites cover four skills only; this bounds drift everywhere else.
    """

    min_gain: float = 0.01
    tolerance: float = 0.05
    max_total_drop: float = 0.07
    max_kl: float = 0.02

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Scores:
    """What the gate knows about one model version.

    ``target``: held-out target score in [0, 1] (None if unmeasured); ``suites``: suite name ->
    score in [0, 1]; ``kl``: mean per-token KL(this version || base) (0 for the base itself).
    """

    target: float | None
    suites: Mapping[str, float] = field(default_factory=dict)
    kl: float | None = None


@dataclass(frozen=True)
class Check:
    """One rule applied: its value, the limit it was held to, and a sentence saying so."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The gate's verdict. ``reasons``: one sentence per failed check, or the pass summary."""

    promote: bool
    reasons: list[str]
    checks: list[Check]

    def to_json(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "checks": [c.to_json() for c in self.checks],
        }


def _finite(x: float | None) -> bool:
    return x is not None and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: float | None) -> str:
    return f"{x:.4f}" if _finite(x) else "missing"


def _suite_check(
    suite: str, ref_name: str, value: float | None, ref: float | None, slack_name: str, slack: float
) -> Check:
    """``value >= ref - slack``; fails closed if either number is missing or not finite."""
    name, label = f"suite:{suite}:{ref_name}", f"suite {suite} vs {ref_name}"
    if not (_finite(value) and _finite(ref)):
        whose = "candidate" if not _finite(value) else ref_name
        shown = value if _finite(value) else None  # NaN is not JSON
        return Check(name, False, shown, None, f"{label}: no {whose} score")
    limit = ref - slack
    ok = value >= limit - EPS
    return Check(
        name,
        ok,
        value,
        limit,
        f"{label}: {value:.4f} {'>=' if ok else '<'} {limit:.4f} "
        f"({ref_name} {ref:.4f} - {slack_name} {slack:.4f})",
    )


def _target_check(candidate: Scores, incumbent: Scores, t: Thresholds) -> Check:
    name = "target_gain"
    if not (_finite(candidate.target) and _finite(incumbent.target)):
        return Check(
            name,
            False,
            None,
            t.min_gain,
            f"held-out target gain: unknown (candidate {_fmt(candidate.target)}, "
            f"incumbent {_fmt(incumbent.target)})",
        )
    gain = candidate.target - incumbent.target
    ok = gain >= t.min_gain - EPS
    return Check(
        name,
        ok,
        gain,
        t.min_gain,
        f"held-out target gain {gain:+.4f} "
        f"({incumbent.target:.4f} -> {candidate.target:.4f}) "
        f"{'>=' if ok else '<'} min_gain {t.min_gain:.4f}",
    )


def _kl_check(candidate: Scores, t: Thresholds) -> Check:
    if not _finite(candidate.kl):
        return Check("kl", False, None, t.max_kl, f"KL(candidate || base): {_fmt(candidate.kl)}")
    ok = candidate.kl <= t.max_kl + EPS
    return Check(
        "kl",
        ok,
        candidate.kl,
        t.max_kl,
        f"KL(candidate || base) {candidate.kl:.4f} nats/token {'<=' if ok else '>'} max_kl {t.max_kl:.4f}",
    )


def decide(candidate: Scores, incumbent: Scores, base: Scores, thresholds: Thresholds) -> Decision:
    """Decide whether ``candidate`` replaces ``incumbent``. Pure: no I/O, no clock.

    Args:
        candidate: the new version's target score, suite scores and KL to the base.
        incumbent: the version now served (the base itself on the first promotion).
        base: the deployed base (theta0).
        thresholds: the rules' limits.
    Returns:
        A :class:`Decision`: ``promote`` only if every check passed; ``reasons`` lists every
        failed check's sentence (or one summary line on success); ``checks`` holds them all.
    """
    checks = [_target_check(candidate, incumbent, thresholds)]
    names = sorted(set(candidate.suites) | set(incumbent.suites) | set(base.suites))
    if not names:
        checks.append(Check("suites", False, None, None, "no prior-capability suite was scored"))
    for name in names:
        value = candidate.suites.get(name)
        checks.append(
            _suite_check(
                name, "incumbent", value, incumbent.suites.get(name), "tolerance", thresholds.tolerance
            )
        )
        checks.append(
            _suite_check(
                name, "base", value, base.suites.get(name), "max_total_drop", thresholds.max_total_drop
            )
        )
    checks.append(_kl_check(candidate, thresholds))
    failed = [c.detail for c in checks if not c.passed]
    if failed:
        return Decision(False, failed, checks)
    summary = f"all {len(checks)} checks passed ({len(names)} suites)"
    return Decision(True, [summary, checks[0].detail, checks[-1].detail], checks)
