"""Where a deployment keeps its state: the settings every Perennial process shares.

``StateSettings`` is the base of the gateway's ``server.settings.Settings`` and the learner's
``learner.settings.LearnerSettings``: the data directory, the database, the base model and the
admin key mean the same in every process, so they are declared (and validated) once, here.
Every field is read from ``PERENNIAL_*`` environment variables or a ``.env`` file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.retention import RetentionPolicy


def split_csv(value: object) -> object:
    """A comma-separated environment value as a list (lists pass through)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class StateSettings(BaseSettings):
    """The data directory, the database, the base model and the admin key."""

    model_config = SettingsConfigDict(
        env_prefix="PERENNIAL_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        Path(".perennial"),
        description="All state of the embedded default: model, database, versions, keys, logs.",
    )
    model_dir: Path | None = Field(
        None,
        description="A local Hugging Face model directory to serve (the base). Unset: the "
        "bundled SmolLM2-135M-Instruct, converted once into <data_dir>/models.",
    )
    database_url: SecretStr | None = Field(
        None,
        description="Database URL: postgresql://user:pass@host/db or sqlite:///path.db (drivers "
        "chosen automatically). Unset: SQLite file <data_dir>/perennial.db.",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Bearer key for /admin routes. Unset: generated at first start and kept "
        "in <data_dir>/admin_key (an external learner must be given it).",
    )

    keep_promoted: int = Field(
        3,
        ge=0,
        description="Snapshots kept for the newest K promoted versions (besides serving and previous).",
    )
    checkpoint_every: int = Field(
        10,
        ge=0,
        description="Keep a snapshot every M generations of promoted versions (0: none); "
        "bounds how many rounds a rebuild replays.",
    )
    rejected_grace_s: float = Field(
        3600.0, ge=0, description="A rejected candidate's weights are dropped this long after it was made."
    )
    disk_budget_gb: float | None = Field(
        None,
        gt=0,
        description="Most GB that version snapshots may hold; beyond it the policy drops "
        "more (never base, serving, previous or a candidate). Unset: no budget.",
    )
    min_free_disk_gb: float = Field(
        1.0,
        ge=0,
        description="A round that would leave less free space than this in the data "
        "directory fails before writing its snapshot (serving untouched).",
    )
    ingest_stream_maxlen: int = Field(
        1_000_000,
        ge=1000,
        description="Cap of the Redis ingest stream and its dead-letter stream (XADD MAXLEN ~): Redis "
        "memory stays bounded while no consumer runs; past it the oldest entries are trimmed, "
        "stored or not. Size it for hours of traffic (store.sink.IngestCollector reports the lag).",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("model_dir")
    @classmethod
    def _absolute_model(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file in the data directory."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'perennial.db'}"

    def retention_policy(self) -> RetentionPolicy:
        budget = None if self.disk_budget_gb is None else int(self.disk_budget_gb * 1e9)
        return RetentionPolicy(self.keep_promoted, self.checkpoint_every, self.rejected_grace_s, budget)

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin_key"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def versions_dir(self) -> Path:
        return self.data_dir / "versions"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
