"""``Thresholds``: the one declaration of the gate's rules, with their ranges, defaults and help.

The learner's ``PERENNIAL_GATE_*`` settings, the ``gate`` part of the admin round body and the
``--gate-*`` flags are derived from these fields (``weights.config.optional_fields``), never
written again. It lives in ``evals`` because both the learner (which decides) and the gateway
(which takes per-round overrides) may import this package. How the rules are applied is
``learner.gate.decide``; the measurements behind the defaults are in ``docs/gate.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """The gate's rules (suite scores are fractions in [0, 1]; the held-out target and KL in nats
    per token).

    Defaults and the measurements behind them are in ``docs/gate.md`` (``bench/gate_power.py``:
    the share of noise-only candidates rejected and of really forgetting ones caught).

    >>> Thresholds(margin=0.02).max_total_drop
    0.05
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_gain: float = Field(
        0.0,
        description="The held-out target check: the lower bound of the paired confidence interval of "
        "candidate - incumbent over the held-out pool must be strictly above this to promote; in the "
        "unit of the score that decides (learner_target_scoring): points (a fraction) for the "
        "verifiers' scores of greedy replies, nats/token for the reward-weighted likelihood.",
    )
    min_target_items: int = Field(
        16,
        ge=0,
        description="Fewest held-out items the target check decides on: a smaller pool rejects the "
        "candidate and says so (more feedback grows the pool); 0: an empty pool leaves the decision "
        "to the suites.",
    )
    margin: float = Field(
        0.03,
        description="Non-inferiority margin per suite against the incumbent: the lower confidence "
        "bound of candidate - incumbent must be >= -margin.",
    )
    max_total_drop: float = Field(
        0.05,
        description="Non-inferiority margin per suite against the base: the lower confidence bound "
        "of candidate - base must be >= -max_total_drop, however many promotions led there.",
    )
    confidence: float = Field(
        0.95, ge=0.5, le=0.999, description="Two-sided level of the paired confidence intervals (0.5-0.999)."
    )
    max_kl: float | None = Field(
        None,
        ge=0,
        description="Veto a candidate whose mean KL(candidate || base) exceeds this (nats/token); "
        "unset: KL is measured and reported, not a veto.",
    )

    def to_json(self) -> dict[str, float | None]:
        return self.model_dump()
