"""``ESConfig``: the one declaration of the ES + AWD knobs, loadable from YAML.

Each knob is declared here once, with its type, range, default and help (pydantic ``Field``s,
as vLLM's and TRL's configs document every field where it is declared). Everything else is
derived from these fields with :func:`optional_fields` and never written by hand: the
``PERENNIAL_LEARNER_*`` settings (``learner.settings``), the ``POST /admin/learner/rounds`` body
(``server.admin.learner``), and the ``perennial learn`` / ``perennial rounds trigger`` flags
(``perennial.cli``). The SDK passes overrides through and shows the server's 400. One
spelling everywhere (``awd_lambda``; ``--awd-lambda`` as a flag). The gate's thresholds are
declared the same way in :mod:`evals.thresholds`.

It lives in ``weights`` (beside the ES math it configures) because both the learner and the
gateway may import this package, and neither may import the other.

Defaults are the papers' settings: ES at scale (Qiu et al. 2025: N=30, sigma=1e-3,
alpha=5e-4) and AWD (Schweighofer et al. 2026: L2 lambda=10 at alpha=5e-4, L1 lambda ~0.01).

The ``cpu`` preset (``ESConfig.preset("cpu")``) is what a 2-core CPU can afford: measured on
the bundled SmolLM2, the paper's sigma/alpha moved held-out addition only 22% -> 23% in 15
iterations (10 min), while sigma=3e-3, alpha=4e-3, N=16 moved it 22% -> 42% in 12 iterations
(8.5 min). Larger steps drift faster (||theta - theta0|| 49 vs 6), which is what AWD and the
gate are for.

>>> ESConfig.preset("cpu", iterations=3).pairs
8
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from weights.meta import NoiseSpec

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"population": 16, "sigma": 3e-3, "alpha": 4e-3, "iterations": 12},
}
# The knobs an operator tunes per round (the admin body, the round flags, the learner settings);
# the others (fitness weights, concurrency, the noise table) are set per run or by a YAML file.
ROUND_KNOBS: tuple[str, ...] = (
    "iterations",
    "population",
    "sigma",
    "alpha",
    "awd_lambda",
    "awd_kind",
    "minibatch",
    "max_tokens",
)
# verifiable: greedy answers scored by the verifier; likelihood: rated replies' log-likelihood
# against theta0, times the reward; reference: the references' log-likelihood (learner.fitness).
FITNESS_COMPONENTS = ("verifiable", "likelihood", "reference")


class ConfigError(ValueError):
    """An ES config value is out of range; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class ESConfig(BaseModel):
    """Hyper-parameters of one ES + AWD run (validated on construction; frozen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    population: int = Field(
        30, ge=2, le=1024, description="Population N per iteration, as N/2 antithetic pairs (even)."
    )
    sigma: float = Field(1e-3, gt=0, le=1, description="Noise scale of a member: theta + sigma * eps.")
    alpha: float = Field(5e-4, gt=0, le=1, description="Learning rate of theta += alpha/N * sum z_n eps_n.")
    awd_kind: Literal["l2", "l1"] = Field(
        "l2", description="AWD form: l2 shrinks towards theta0, l1 soft-thresholds."
    )
    awd_lambda: float = Field(
        10.0,
        ge=0,
        description="AWD strength towards the base (0: plain ES); for l2, alpha * awd_lambda < 1.",
    )
    iterations: int = Field(100, ge=1, le=10_000, description="ES iterations (K).")
    minibatch: int = Field(
        16, ge=1, le=4096, description="Items scored per iteration (the same items for every member)."
    )
    max_tokens: int = Field(16, ge=1, le=1024, description="Greedy generation budget per verifiable item.")
    seed: int = Field(0, ge=0, description="Base seed of the run's member seeds.")
    fitness_weights: dict[str, float] = Field(
        default_factory=lambda: {"verifiable": 1.0, "likelihood": 1.0},
        description="Weights of the fitness components, each z-scored first: verifiable (greedy "
        "answers scored by the verifier), likelihood (rated replies' log-likelihood against the base, "
        "times the reward), reference (the references' log-likelihood, no decoding); weight 0 or "
        "absent: not computed.",
    )
    concurrency: int = Field(
        32, ge=1, le=1024, description="Requests in flight per member (vLLM batches them)."
    )
    noise: NoiseSpec = Field(
        default_factory=NoiseSpec, description="The shared Gaussian noise table members are drawn from."
    )

    @field_validator("population")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be an even number >= 2 (antithetic pairs)")
        return value

    @field_validator("awd_lambda")
    @classmethod
    def _no_overshoot(cls, value: float, info: ValidationInfo) -> float:
        # alpha and awd_kind are declared above, so they are validated (and in info.data) first.
        if info.data.get("awd_kind") == "l2" and info.data.get("alpha", 0) * value >= 1:
            raise ValueError("alpha * awd_lambda must be < 1 for L2 (else the decay overshoots theta0)")
        return value

    @field_validator("fitness_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not set(value) <= set(FITNESS_COMPONENTS):
            raise ValueError(f"keys are {', '.join(map(repr, FITNESS_COMPONENTS))}")
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all 0")
        return value

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
        """Build from a mapping; an unknown key or a bad value raises ConfigError naming it."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise config_error(exc) from None

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
        return self.model_dump()


def config_error(exc: ValidationError) -> ConfigError:
    """The first error of a pydantic validation as a ConfigError naming its field."""
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "config"
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return ConfigError(name, message.removeprefix("Value error, "))


def optional_fields(
    model: type[BaseModel],
    names: typing.Iterable[str] | None = None,
    *,
    prefix: str = "",
    keep_default: bool = False,
) -> dict[str, tuple[Any, FieldInfo]]:
    """Copies of ``model``'s fields for ``pydantic.create_model``: same type, range and help.

    Each copy also admits ``None`` and defaults to it ("not set: the declaration's default"),
    unless ``keep_default``. This is how the settings, the admin body and the flags get their
    knobs without declaring them again.

    >>> sorted(optional_fields(ESConfig, ["sigma"], prefix="learner_"))
    ['learner_sigma']
    """
    out: dict[str, tuple[Any, FieldInfo]] = {}
    for name in names if names is not None else model.model_fields:
        declared = model.model_fields[name]
        copy = FieldInfo.merge_field_infos(declared)
        if not keep_default:
            copy.default, copy.default_factory = None, None
        out[prefix + name] = (declared.annotation | None, copy)
    return out


def scalar_type(annotation: Any) -> tuple[type | None, tuple[str, ...]]:
    """``(int | float | str, choices)`` of a knob's annotation, for a command-line flag."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return str, tuple(str(a) for a in args)
    return (annotation if annotation in (int, float, str, bool) else None), ()
