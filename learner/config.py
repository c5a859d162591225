"""``ESConfig``: one validated config for an ES + AWD run, loadable from YAML.

The ES knobs are declared here once, each with its help text (field metadata, as TRL's configs do;
``ES_KNOBS`` lists the scalar ones). Everything else derives from this declaration or is tested against it
(``tests/unit/test_knobs.py``): the ``PERENNIAL_LEARNER_*`` settings, the
``POST /admin/learner/rounds`` body, ``perennial learn`` and ``perennial runs trigger`` flags,
and the SDK's ``trigger_round`` keywords. One spelling everywhere (``awd_lambda``,
``awd_kind``; ``--awd-lambda``, ``--awd-kind`` as flags).

Defaults are the papers' settings: ES at scale (Qiu et al. 2025: N=30, sigma=1e-3,
alpha=5e-4) and AWD (Schweighofer et al. 2026: L2 lambda=10 at alpha=5e-4, L1 lambda ~0.01).

The ``cpu`` preset (``ESConfig.preset("cpu")``) is what a 2-core CPU can afford: measured on
the bundled SmolLM2, the paper's sigma/alpha moved held-out addition only 22% -> 23% in 15
iterations (10 min), while sigma=3e-3, alpha=4e-3, N=16 moved it 22% -> 42% in 12 iterations
(8.5 min). Larger steps drift faster (||theta - theta0|| 49 vs 6), which is what AWD and the
gate are for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.learner_engine import NoiseSpec
from weights.meta import AWD_KINDS, NOISE_TABLE_SIZE

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"population": 16, "sigma": 3e-3, "alpha": 4e-3, "iterations": 12},
}


class ConfigError(ValueError):
    """An ES config value is out of range; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ESConfig:
    """Hyper-parameters of one ES + AWD run (validated on construction)."""

    population: int = _knob(30, "Population N per iteration, as N/2 antithetic pairs (even).")
    sigma: float = _knob(1e-3, "Noise scale of a member: theta + sigma * eps.")
    alpha: float = _knob(5e-4, "Learning rate of theta += alpha/N * sum z_n eps_n.")
    awd_lambda: float = _knob(0.0, "AWD strength towards the base (0: plain ES).")
    awd_kind: str = _knob("l2", "AWD form: l2 shrinks towards theta0, l1 soft-thresholds.")
    iterations: int = _knob(100, "ES iterations (K).")
    minibatch: int = _knob(16, "Items scored per iteration (the same items for every member).")
    max_tokens: int = _knob(16, "Greedy generation budget per verifiable item.")
    seed: int = _knob(0, "Base seed of the run's member seeds.")
    fitness_weights: dict[str, float] = field(
        default_factory=lambda: {"verifiable": 1.0, "likelihood": 1.0},
        metadata={"help": "Weights of the fitness components (each z-scored first)."},
    )
    concurrency: int = _knob(32, "Requests in flight per member (vLLM batches them).")
    noise_table_size: int = _knob(NOISE_TABLE_SIZE, "Values in the shared Gaussian noise table.")
    noise_table_seed: int = _knob(0, "Seed the shared noise table is drawn from.")

    def __post_init__(self) -> None:
        _require(
            self.population >= 2 and self.population % 2 == 0,
            "population",
            "must be an even number >= 2 (antithetic pairs)",
        )
        _require(self.sigma > 0, "sigma", "must be > 0")
        _require(self.alpha > 0, "alpha", "must be > 0")
        _require(self.awd_kind in AWD_KINDS, "awd_kind", f"must be one of {AWD_KINDS}")
        _require(self.awd_lambda >= 0, "awd_lambda", "must be >= 0")
        _require(
            self.awd_kind != "l2" or self.alpha * self.awd_lambda < 1,
            "awd_lambda",
            "alpha * awd_lambda must be < 1 for L2 (else the decay overshoots theta0)",
        )
        _require(self.iterations >= 0, "iterations", "must be >= 0")
        _require(self.minibatch >= 1, "minibatch", "must be >= 1")
        _require(1 <= self.max_tokens <= 4096, "max_tokens", "must be in 1..4096")
        _require(self.concurrency >= 1, "concurrency", "must be >= 1")
        _require(self.noise_table_size >= 1024, "noise_table_size", "must be >= 1024")
        weights = self.fitness_weights
        _require(
            isinstance(weights, dict) and set(weights) <= {"verifiable", "likelihood"},
            "fitness_weights",
            "keys are 'verifiable' and 'likelihood'",
        )
        _require(
            all(float(v) >= 0 for v in weights.values()) and sum(weights.values()) > 0,
            "fitness_weights",
            "weights must be >= 0 and not all 0",
        )

    @property
    def pairs(self) -> int:
        return self.population // 2

    @property
    def noise(self) -> NoiseSpec:
        """The shared noise table the learner engine draws this run's members from."""
        return NoiseSpec(size=self.noise_table_size, seed=self.noise_table_seed)

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


_NUMERIC = {
    "population": int,
    "iterations": int,
    "minibatch": int,
    "max_tokens": int,
    "seed": int,
    "concurrency": int,
    "noise_table_size": int,
    "noise_table_seed": int,
    "sigma": float,
    "alpha": float,
    "awd_lambda": float,
}


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


# The scalar knobs, as (name, type, help), for flags and request bodies derived from them.
ES_KNOBS: tuple[tuple[str, type, str], ...] = tuple(
    (f.name, _NUMERIC.get(f.name, str), f.metadata["help"])
    for f in dataclasses.fields(ESConfig)
    if f.name != "fitness_weights"
)


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)
