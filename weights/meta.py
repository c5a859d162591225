"""``meta.json``: the one typed schema of a snapshot's provenance (no torch needed to read it).

Written by :func:`weights.snapshot.write_snapshot` for every snapshot, whoever made it (a
learner round or ``perennial learn``); read back with :func:`read_meta`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

META = "meta.json"
AWD_KINDS = ("l2", "l1")  # the forms of anchored weight decay a seed log may name
# The default shared noise table: 256 MB of fp32 Gaussians, larger than any single tensor of
# SmolLM2 (its 28.3M-value embedding). A seed log replays only with the table it was drawn
# from, so its size is recorded with it. Declared here, not in weights.es, so that reading a
# meta.json never imports torch.
NOISE_TABLE_SIZE = 1 << 26


class NoiseSpec(BaseModel):
    """The shared noise table: which one a run draws from, and a seed log was drawn from (a seed
    means nothing without it). The one declaration of it: the ES config holds it, the learner
    engine builds ``weights.es.NoiseTable(spec.size, spec.seed)`` from it, meta.json records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(NOISE_TABLE_SIZE, ge=1024, description="Values in the table (fp32 Gaussians).")
    seed: int = Field(0, description="Seed the table is drawn from.")


class SnapshotMeta(BaseModel):
    """``meta.json`` of a snapshot: provenance, the seed log, metrics, checksums.

    The seed log (``seeds``, ``coefficients`` per iteration, ``noise`` and the ES constants in
    ``config``: alpha, sigma, population, awd_lambda, awd_kind) re-applied to the parent gives
    these weights. ``created_at``, ``sha256`` and ``tensors_sha256`` are set by
    :func:`write_snapshot`.
    """

    model_config = ConfigDict(extra="forbid")

    parent: str = Field(
        description="What it descends from: a version id (a learner round) "
        "or a model directory (``perennial learn``)."
    )
    parent_sha256: str | None = Field(None, description="sha256 of the parent's weights files.")
    base: str | None = Field(None, description="theta0, the AWD anchor: version id or directory.")
    base_sha256: str | None = Field(None, description="sha256 of the base's weights files.")
    # meta.json files written before rounds had one name say run_id: read either, write round_id.
    round_id: int | None = Field(
        None,
        validation_alias=AliasChoices("round_id", "run_id"),
        description="The learner round that made it.",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The resolved ES config.")
    seeds: list[list[int]] = Field(default_factory=list, description="Pair seeds per iteration.")
    coefficients: list[list[float]] = Field(
        default_factory=list, description="Update coefficient of each pair seed, per iteration."
    )
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    drift: float | None = Field(None, description="||theta - theta0||_2 at the end.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="What the writer measured.")
    created_at: str | None = Field(None, description="UTC, ISO 8601; set by write_snapshot.")
    sha256: str | None = Field(None, description="Weights files' sha256; set by write_snapshot.")
    tensors_sha256: str | None = Field(None, description="Raw tensors' sha256; set by write_snapshot.")


def read_meta(snapshot_dir: Path) -> SnapshotMeta | None:
    """The ``meta.json`` of a snapshot (None for a plain model directory)."""
    path = Path(snapshot_dir) / META
    return SnapshotMeta.model_validate_json(path.read_text()) if path.is_file() else None
