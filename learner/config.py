"""``ESConfig``: one validated config for an ES + AWD run, loadable from YAML.

Defaults are the papers' settings (the contract in DESIGN.md):

=================  =========  ==================================================================
field              default    source / meaning
=================  =========  ==================================================================
population         30         N members per iteration, as 15 antithetic pairs (Qiu et al. 2025)
sigma              1e-3       noise scale of a member (Qiu et al. 2025)
alpha              5e-4       learning rate of ``theta += alpha/N sum z_n eps_n`` (Qiu et al.)
awd_lambda         0.0        AWD strength; 0 = plain ES. Paper: L2 lambda=10 at alpha=5e-4,
                              L1 lambda ~0.01 (Schweighofer et al. 2026)
awd_kind           l2         ``l2`` (shrink towards theta0) or ``l1`` (soft-threshold)
iterations         100        ES steps
minibatch          16         items scored per iteration (the same items for every member)
max_tokens         16         greedy generation length for verifiable items
=================  =========  ==================================================================

The ``cpu`` preset (``ESConfig.preset("cpu")``) is what a 2-core CPU can afford: FINDINGS.md
measured the paper's sigma/alpha moving held-out addition only 22% -> 23% in 15 iterations
(10 min), while sigma=3e-3, alpha=4e-3, N=16 moved it 22% -> 42% in 12 iterations (8.5 min).
Larger steps drift faster (||theta - theta0|| 49 vs 6), which is what AWD and the gate are for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from learner.es import AWD_KINDS

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"population": 16, "sigma": 3e-3, "alpha": 4e-3, "iterations": 12},
}


class ConfigError(ValueError):
    """An ES config value is out of range; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class ESConfig:
    """Hyper-parameters of one ES + AWD run (validated on construction)."""

    population: int = 30
    sigma: float = 1e-3
    alpha: float = 5e-4
    awd_lambda: float = 0.0
    awd_kind: str = "l2"
    iterations: int = 100
    minibatch: int = 16
    max_tokens: int = 16
    seed: int = 0
    # Weights of the fitness components; each is z-scored across the population first.
    fitness_weights: dict[str, float] = field(
        default_factory=lambda: {"verifiable": 1.0, "likelihood": 1.0}
    )
    concurrency: int = 32  # requests in flight per member (vLLM batches them)
    noise_table_size: int = 1 << 26
    noise_table_seed: int = 0

    def __post_init__(self) -> None:
        _require(self.population >= 2 and self.population % 2 == 0, "population",
                 "must be an even number >= 2 (antithetic pairs)")  # fmt: skip
        _require(self.sigma > 0, "sigma", "must be > 0")
        _require(self.alpha > 0, "alpha", "must be > 0")
        _require(self.awd_kind in AWD_KINDS, "awd_kind", f"must be one of {AWD_KINDS}")
        _require(self.awd_lambda >= 0, "awd_lambda", "must be >= 0")
        _require(self.awd_kind != "l2" or self.alpha * self.awd_lambda < 1, "awd_lambda",
                 "alpha * awd_lambda must be < 1 for L2 (else the decay overshoots theta0)")  # fmt: skip
        _require(self.iterations >= 0, "iterations", "must be >= 0")
        _require(self.minibatch >= 1, "minibatch", "must be >= 1")
        _require(1 <= self.max_tokens <= 4096, "max_tokens", "must be in 1..4096")
        _require(self.concurrency >= 1, "concurrency", "must be >= 1")
        _require(self.noise_table_size >= 1024, "noise_table_size", "must be >= 1024")
        weights = self.fitness_weights
        _require(isinstance(weights, dict) and set(weights) <= {"verifiable", "likelihood"},
                 "fitness_weights", "keys are 'verifiable' and 'likelihood'")  # fmt: skip
        _require(all(float(v) >= 0 for v in weights.values()) and sum(weights.values()) > 0,
                 "fitness_weights", "weights must be >= 0 and not all 0")  # fmt: skip

    @property
    def pairs(self) -> int:
        return self.population // 2

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ESConfig:
        """The ``paper`` or ``cpu`` settings, with ``overrides`` on top (None values ignored)."""
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r}; one of {sorted(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ESConfig:
        """Build from a mapping; unknown keys are an error (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], "unknown ES config field")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    @classmethod
    def from_yaml(cls, path: Path, **overrides: Any) -> ESConfig:
        """Load a YAML mapping; a top-level ``preset:`` key picks the base settings."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError("config", f"{path} must hold a mapping")
        preset = data.pop("preset", "paper")
        return cls.preset(preset, **{**data, **{k: v for k, v in overrides.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as written into every snapshot's ``meta.json``."""
        return dataclasses.asdict(self)


_NUMERIC = {"population": int, "iterations": int, "minibatch": int, "max_tokens": int, "seed": int,
            "concurrency": int, "noise_table_size": int, "noise_table_seed": int,
            "sigma": float, "alpha": float, "awd_lambda": float}


def _coerce(name: str, value: Any) -> Any:
    # YAML 1.1 reads "3e-3" (no dot) as a string; numbers from flags may be strings too.
    kind = _NUMERIC.get(name)
    if kind is None or isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, f"{value!r} is not a number") from exc
    if kind is int and not number.is_integer():
        raise ConfigError(name, f"{value!r} is not an integer")
    return kind(number)


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)
