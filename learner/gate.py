"""The promotion gate: one pure function from per-item scores to a decision with reasons.

A candidate is promoted only if every check passes:

* ``target_gain``: a paired superiority test on the held-out pool (every held-out feedback item
  so far, scored for both models): the lower bound of the ``confidence`` interval of
  mean(candidate - incumbent) > ``min_gain``, over at least ``min_target_items`` items (an item's
  score is its reward-weighted mean per-token log-likelihood of the reference, the correction
  or the rated reply, in nats/token: ``learner.heldout``);
* for every suite scored for any of the three models, a paired non-inferiority test on the
  suite's items (the same items, scored for both models):
  ``suite:<name>:incumbent``: the lower bound of the ``confidence`` interval of
  mean(candidate - incumbent) >= -``margin``, and
  ``suite:<name>:base``: the lower bound for mean(candidate - base) >= -``max_total_drop``
  (the cap on forgetting accumulated over successive promotions, each within ``margin``);
* ``kl``: mean per-token KL(candidate || base) on the probe prompts, reported; a veto only
  when ``max_kl`` is set.

The intervals are percentile bootstraps of the mean paired difference (``BOOTSTRAP_RESAMPLES``
resamples of the items, a fixed seed per check: the same scores give the same decision). Paired
because the two versions answer the same items: most items agree, so the spread of the
differences, not of the scores, sets the width: on 400 items with 5% of the answers flipping
each way, +-3.1 points at 95%, against +-6.9 points for two independent means of a 50% suite
(arithmetic, not a measurement; measurements in ``docs/gate.md``).

Missing or non-finite numbers fail closed, and so does a decision without any suite: a suite
the candidate was not scored on, an incumbent or base without item scores, items that differ
between the two versions compared. Comparisons allow ``EPS`` so that a value exactly at a
threshold passes despite float rounding (0.57 - 0.56 is 0.009999999999999898).

>>> same = {"qa": {"a": 1.0, "b": 0.0}}
>>> pool = {f"t{i}": -1.0 for i in range(16)}
>>> better = {k: v + 0.1 for k, v in pool.items()}
>>> decide(Scores(better, same, 0.01), Scores(pool, same), Scores(None, same, 0.0), Thresholds()).promote
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evals.thresholds import Thresholds

EPS = 1e-9
BOOTSTRAP_RESAMPLES = 4000


@dataclass(frozen=True)
class Scores:
    """What the gate knows about one model version.

    ``target``: held-out item id -> item score (reward-weighted mean per-token log-likelihood,
    nats/token; None if unmeasured); ``suites``: suite name -> item id -> item score in [0, 1];
    ``kl``: mean per-token KL(this version || base) (0 for the base itself).
    """

    target: Mapping[str, float] | None
    suites: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    kl: float | None = None
    target_unit: str = "nats/token"  # or "points": verifier scores of greedy replies, in [0, 1]


@dataclass(frozen=True)
class Interval:
    """A paired comparison: mean(a - b) over ``n`` items with its confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def paired_interval(
    a: Mapping[str, float], b: Mapping[str, float], confidence: float, *, key: str = ""
) -> Interval:
    """Bootstrap interval of mean(a[i] - b[i]) over the items both score (they must be the same).

    Deterministic: the resampling seed is derived from ``key`` (e.g. the check's name).

    >>> paired_interval({"x": 1.0, "y": 1.0}, {"x": 1.0, "y": 1.0}, 0.95)
    Interval(mean=0.0, low=0.0, high=0.0, n=2, confidence=0.95)
    """
    if set(a) != set(b):
        raise ValueError(f"item sets differ ({len(set(a) ^ set(b))} items in one only)")
    ids = sorted(a)
    d = np.array([a[i] - b[i] for i in ids], dtype=np.float64)
    if not len(d) or not np.isfinite(d).all():
        raise ValueError("no items" if not len(d) else "a non-finite item score")
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(BOOTSTRAP_RESAMPLES, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(d.mean()), float(low), float(high), len(d), confidence)


@dataclass(frozen=True)
class Check:
    """One rule applied: its value, the limit it was held to, and a sentence saying so.

    ``interval`` holds the paired comparison of a suite check (``value`` is then its lower
    bound, ``limit`` minus the margin).
    """

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
    interval: Interval | None = None

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["interval"] = self.interval.to_json() if self.interval else None
        return row


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


def _percent(level: float) -> str:
    """95% or 97.5%: a confidence level as people write it."""
    return f"{100 * level:.1f}".removesuffix(".0") + "%"


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def suite_check_of(name: str) -> tuple[str, str] | None:
    """``(suite, "base" | "incumbent")`` for a suite check's name (``suite:<name>:<ref>``, as
    :func:`_suite_check` names it), else None."""
    if not name.startswith("suite:"):
        return None
    suite, _, ref = name[len("suite:") :].rpartition(":")
    return (suite, ref) if suite and ref in ("base", "incumbent") else None


def _suite_check(
    suite: str,
    ref_name: str,
    value: Mapping[str, float] | None,
    ref: Mapping[str, float] | None,
    margin_name: str,
    margin: float,
    confidence: float,
) -> Check:
    """Lower bound of the paired interval of value - ref >= -margin; fails closed otherwise."""
    name, label = f"suite:{suite}:{ref_name}", f"suite {suite} vs {ref_name}"
    if not value or not ref:
        whose = "candidate" if not value else ref_name
        return Check(name, False, None, -margin, f"{label}: no {whose} item scores")
    try:
        ci = paired_interval(value, ref, confidence, key=suite)  # same data, same interval
    except ValueError as exc:
        return Check(name, False, None, -margin, f"{label}: cannot compare ({exc})")
    ok = ci.low >= -margin - EPS
    return Check(
        name,
        ok,
        ci.low,
        -margin,
        f"{label}: {_points(ci.mean)} points [{_percent(confidence)} CI {_points(ci.low)}, {_points(ci.high)}] "
        f"over {ci.n} items; lower bound {'>=' if ok else '<'} -{margin_name} {_points(-margin)}",
        ci,
    )


def _nats(x: float) -> str:
    return f"{x:+.4f}"


def _target_check(candidate: Scores, incumbent: Scores, t: Thresholds) -> Check:
    """Lower bound of the paired interval of candidate - incumbent on the held-out pool > min_gain.

    Fails closed: no item scores, fewer than ``min_target_items`` items, items that differ.
    """
    name, label = "target_gain", "held-out target"
    if not candidate.target and not incumbent.target and t.min_target_items == 0:
        return Check(
            name, True, None, t.min_gain, f"{label}: no held-out items (min_target_items 0: not checked)"
        )
    if not candidate.target or not incumbent.target:
        whose = "candidate" if not candidate.target else "incumbent"
        return Check(
            name, False, None, t.min_gain, f"{label}: no {whose} item scores (an empty held-out pool)"
        )
    n = len(candidate.target)
    if n < t.min_target_items:
        return Check(
            name,
            False,
            None,
            t.min_gain,
            f"{label}: {n} held-out items, fewer than min_target_items {t.min_target_items}: too few "
            "to decide (more feedback grows the pool)",
        )
    try:
        ci = paired_interval(candidate.target, incumbent.target, t.confidence, key="target")
    except ValueError as exc:
        return Check(name, False, None, t.min_gain, f"{label}: cannot compare ({exc})")
    ok = ci.low > t.min_gain + EPS
    show, unit = (_points, "points") if candidate.target_unit == "points" else (_nats, "nats/token")
    return Check(
        name,
        ok,
        ci.low,
        t.min_gain,
        f"{label}: {show(ci.mean)} {unit} [{_percent(t.confidence)} CI {show(ci.low)}, "
        f"{show(ci.high)}] over {ci.n} items; lower bound {'>' if ok else '<='} min_gain {show(t.min_gain)}",
        ci,
    )


def _kl_check(candidate: Scores, t: Thresholds) -> Check:
    if t.max_kl is None:
        return Check(
            "kl",
            True,
            candidate.kl if _finite(candidate.kl) else None,
            None,
            f"KL(candidate || base) {_fmt(candidate.kl)} nats/token (reported, no veto: max_kl unset)",
        )
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


def look_confidence(confidence: float, looks: int) -> float:
    """The two-sided level of every look's intervals when the suites are looked at ``looks`` times.

    Each look may promote, so each spends a share of the one-sided error ``(1 - confidence) / 2``
    (the chance that a suite whose true loss exceeds its margin passes): Bonferroni's equal split
    keeps that chance, summed over the looks, within what one look at ``confidence`` allows.

    >>> round(look_confidence(0.95, 2), 6)
    0.975
    """
    if looks < 1:
        raise ValueError("looks must be >= 1")
    return 1 - (1 - confidence) / looks


def decide(
    candidate: Scores, incumbent: Scores, base: Scores, thresholds: Thresholds, *, looks: int = 1
) -> Decision:
    """Decide whether ``candidate`` replaces ``incumbent``. Pure: no I/O, no clock.

    Args:
        candidate: the new version's target score, per-item suite scores and KL to the base.
        incumbent: the version now served (the base itself on the first promotion).
        base: the deployed base (theta0).
        thresholds: the rules' limits.
        looks: how many looks at the suites the gate may take (``interim``); every suite
            interval is then at ``look_confidence(thresholds.confidence, looks)``.
    Returns:
        A :class:`Decision`: ``promote`` only if every check passed; ``reasons`` lists every
        failed check's sentence (or one summary line on success); ``checks`` holds them all,
        each suite check with its interval.
    """
    t = thresholds
    level = look_confidence(t.confidence, looks)
    checks = [_target_check(candidate, incumbent, t)]
    names = sorted(set(candidate.suites) | set(incumbent.suites) | set(base.suites))
    if not names:
        checks.append(Check("suites", False, None, None, "no prior-capability suite was scored"))
    for name in names:
        value = candidate.suites.get(name)
        checks.append(
            _suite_check(name, "incumbent", value, incumbent.suites.get(name), "margin", t.margin, level)
        )
        checks.append(
            _suite_check(
                name, "base", value, base.suites.get(name), "max_total_drop", t.max_total_drop, level
            )
        )
    checks.append(_kl_check(candidate, t))
    failed = [c.detail for c in checks if not c.passed]
    if failed:
        return Decision(False, failed, checks)
    summary = f"all {len(checks)} checks passed ({len(names)} suites)"
    return Decision(True, [summary, checks[0].detail, checks[-1].detail], checks)


def interim(
    candidate: Scores, incumbent: Scores, base: Scores, thresholds: Thresholds, *, looks: int
) -> Decision | None:
    """An interim look of the sequential gate: the decision if the items scored so far settle it,
    else None (score the next slice of every suite and look again).

    * promote: every check passes at the looks' level (``decide`` with ``looks``), so over all
      looks the chance of promoting a suite's real loss stays within one look's at ``confidence``;
    * reject: some suite's interval lies wholly below its margin (even its upper bound): the
      candidate lost more than the margin there, and more items would only narrow the interval.

    A check that fails short of that (a lower bound under the margin, the upper one above it)
    leaves the question to the next look, as does the KL check, which more suite items cannot
    change but which the final look reports with everything else. The target check's interval
    (the held-out pool, scored once, at ``confidence`` at every look) rejects here too when even
    its upper bound is under ``min_gain``.
    """
    decision = decide(candidate, incumbent, base, thresholds, looks=looks)
    if decision.promote:
        return decision
    lost = [c for c in decision.checks if c.interval is not None and c.interval.high < c.limit - EPS]
    return decision if lost else None


def at_look(
    candidate: Scores, incumbent: Scores, base: Scores, thresholds: Thresholds, *, look: int, looks: int
) -> Decision | None:
    """The gate at look ``look`` of ``looks`` on the items scored so far: ``interim`` before the
    last look (None: score the next slice), ``decide`` at it (always a decision)."""
    if look < looks:
        return interim(candidate, incumbent, base, thresholds, looks=looks)
    return decide(candidate, incumbent, base, thresholds, looks=looks)


def reject_without_suites(
    candidate_target: Mapping[str, float] | None,
    incumbent_target: Mapping[str, float] | None,
    thresholds: Thresholds,
    *,
    unit: str = "nats/token",
) -> Decision | None:
    """The verdict when the held-out target check alone decides it, else None.

    The same rule as ``decide``'s target check (the paired interval on the held-out pool). A
    candidate that does not clear it is rejected whatever its suites say, so scoring ~1,000 suite items and the KL for it buys nothing but minutes of a
    round: the round skips them (``gate_early_reject``) and records this decision, whose
    ``suites`` check says why no suite was scored. None when the target check passes.

    >>> pool = {f"t{i}": -1.0 for i in range(16)}
    >>> reject_without_suites(pool, pool, Thresholds()).reasons[0]
    'held-out target: +0.0000 nats/token [95% CI +0.0000, +0.0000] over 16 items; lower bound <= min_gain +0.0000'
    >>> reject_without_suites({k: v + 0.1 for k, v in pool.items()}, pool, Thresholds()) is None
    True
    """
    target = _target_check(
        Scores(candidate_target, target_unit=unit), Scores(incumbent_target, target_unit=unit), thresholds
    )
    if target.passed:
        return None
    skipped = Check("suites", False, None, None, "suites and KL not scored: the target check decided")
    return Decision(False, [target.detail], [target, skipped])


def mean_scores(suites: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Suite name -> mean item score (for listings next to the per-item scores)."""
    return {name: sum(items.values()) / len(items) for name, items in suites.items() if items}
