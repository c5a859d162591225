"""Rebuild a version from its nearest stored ancestor by replaying seed logs, bit for bit.

A learner round's candidate is fully described by its parent and its seed log (``meta.json``:
seeds and coefficients per iteration, the noise table, alpha, population, AWD lambda and kind).
The ES step is elementwise fp32 arithmetic on the shared noise table, so re-applying the log to
the parent's exact tensors gives the candidate's exact tensors: each generation's result is
checked against the ``tensors_sha256`` recorded when it was made, and the written snapshot's
file checksum against its recorded ``sha256``. That is what lets a deployment drop the weights
of most versions (a few kilobytes of seed log stay) and rebuild any of them on demand::

    report = rebuild(chain, start_dir=versions / "v3", base_dir=base, out_dir=versions / "v6")

``chain`` is the generations to replay, oldest first (the versions after the stored ancestor,
up to the target), each with its :class:`SnapshotMeta`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from weights.es import NoiseTable, es_step, tensors_sha256
from weights.meta import META, SnapshotMeta
from weights.snapshot import load_tensors, write_snapshot

Progress = Callable[[dict], None]


class RebuildError(RuntimeError):
    """The replay cannot run (missing log) or does not reproduce what was recorded."""


@dataclass(frozen=True)
class Generation:
    """One step of the chain: the version it makes and the meta recorded when it was made."""

    version: str
    meta: SnapshotMeta


@dataclass
class RebuildReport:
    version: str
    start: str
    generations: list[str]
    iterations: int
    seconds: float
    per_generation_s: list[float] = field(default_factory=list)
    sha256: str | None = None
    tensors_sha256: str | None = None

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "start": self.start,
            "generations": self.generations,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 3),
            "per_generation_s": [round(s, 3) for s in self.per_generation_s],
            "sha256": self.sha256,
            "tensors_sha256": self.tensors_sha256,
        }


def seed_log_bytes(meta: SnapshotMeta) -> int:
    """Size of what a replay needs from ``meta`` (seeds, coefficients, noise, ES constants)."""
    log = {
        "parent": meta.parent,
        "base": meta.base,
        "config": meta.config,
        "seeds": meta.seeds,
        "coefficients": meta.coefficients,
        "noise": meta.noise.model_dump(),
        "tensors_sha256": meta.tensors_sha256,
    }
    return len(json.dumps(log, separators=(",", ":")).encode())


def replayable(meta: SnapshotMeta) -> str | None:
    """Why ``meta`` cannot be replayed, or None if it can."""
    missing = [k for k in ("alpha", "population") if k not in meta.config]
    if missing:
        return f"its seed log lacks {', '.join(missing)}"
    if len(meta.seeds) != len(meta.coefficients):
        return "its seed log has a different number of seed and coefficient rows"
    if not meta.tensors_sha256:
        return "no tensors_sha256 was recorded to verify a replay against"
    return None


def can_replay(meta: dict) -> bool:
    """Whether a registry row's ``meta`` (a ``meta.json`` as JSON) is a seed log that rebuilds it."""
    try:
        return replayable(SnapshotMeta.model_validate(meta)) is None
    except ValueError:
        return False


def replay_generation(
    theta: dict[str, torch.Tensor],
    theta0: dict[str, torch.Tensor],
    meta: SnapshotMeta,
    table: NoiseTable,
    on_iteration: Callable[[int, int], None] | None = None,
) -> None:
    """Apply one version's seed log to ``theta`` in place (the step the learner engine ran)."""
    config = meta.config
    total = len(meta.seeds)
    for i, (seeds, coefficients) in enumerate(zip(meta.seeds, meta.coefficients, strict=True)):
        es_step(
            theta,
            theta0,
            table,
            [int(s) for s in seeds],
            [float(c) for c in coefficients],
            alpha=float(config["alpha"]),
            population=int(config["population"]),
            awd_lambda=float(config.get("awd_lambda", 0.0)),
            awd_kind=str(config.get("awd_kind", "l2")),
        )
        if on_iteration is not None:
            on_iteration(i + 1, total)


def rebuild(
    chain: Sequence[Generation],
    *,
    start: str,
    start_dir: Path,
    base_dir: Path,
    out_dir: Path,
    progress: Progress | None = None,
) -> RebuildReport:
    """Replay ``chain`` from the stored snapshot ``start_dir`` and write the last generation.

    Args:
        chain: the generations after ``start``, oldest first; the last one is written.
        start: the id of the stored ancestor (for the report).
        start_dir: its snapshot (or the base model directory).
        base_dir: theta0, the AWD anchor every generation was trained against.
        out_dir: where the rebuilt snapshot goes (atomically; its ``meta.json`` is the recorded one).
        progress: called with ``{"generation", "generations", "iteration", "iterations", "version"}``.

    Raises:
        RebuildError: a generation cannot be replayed, or its tensors do not match the record.
    """
    if not chain:
        raise RebuildError("nothing to rebuild: the chain is empty")
    for gen in chain:
        if (why := replayable(gen.meta)) is not None:
            raise RebuildError(f"{gen.version} cannot be rebuilt: {why}")
    started = time.perf_counter()
    # Two loads are two copy-on-write maps: theta moves, theta0 stays, even from one directory.
    theta = load_tensors(Path(start_dir))
    theta0 = load_tensors(Path(base_dir))
    table: NoiseTable | None = None  # one in memory at a time (256 MB by default)
    per_generation = []
    iterations = 0
    for g, gen in enumerate(chain):
        t0 = time.perf_counter()
        if table is None or (table.size, table.seed) != (gen.meta.noise.size, gen.meta.noise.seed):
            table = NoiseTable(gen.meta.noise.size, gen.meta.noise.seed)

        def tick(i: int, n: int, g: int = g, gen: Generation = gen) -> None:
            if progress is not None:
                progress(
                    {
                        "version": gen.version,
                        "generation": g + 1,
                        "generations": len(chain),
                        "iteration": i,
                        "iterations": n,
                    }
                )

        replay_generation(theta, theta0, gen.meta, table, tick)
        iterations += len(gen.meta.seeds)
        got = tensors_sha256(theta)
        if got != gen.meta.tensors_sha256:
            raise RebuildError(
                f"replaying {gen.version}'s seed log gave tensors {got[:12]}, "
                f"recorded {gen.meta.tensors_sha256[:12]}: the log or its parent is not what made it"
            )
        per_generation.append(time.perf_counter() - t0)
    target = chain[-1]
    written = write_snapshot(Path(out_dir), theta, Path(start_dir), target.meta)
    if target.meta.sha256 and written.sha256 != target.meta.sha256:
        raise RebuildError(
            f"{target.version}: rebuilt file checksum {written.sha256[:12]} != recorded {target.meta.sha256[:12]}"
        )
    # The recorded meta, not a new stamp: a rebuilt snapshot is the same snapshot.
    (Path(out_dir) / META).write_text(
        json.dumps(target.meta.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    )
    return RebuildReport(
        version=target.version,
        start=start,
        generations=[g.version for g in chain],
        iterations=iterations,
        seconds=time.perf_counter() - started,
        per_generation_s=per_generation,
        sha256=written.sha256,
        tensors_sha256=written.tensors_sha256,
    )


__all__ = [
    "Generation",
    "can_replay",
    "RebuildError",
    "RebuildReport",
    "rebuild",
    "replay_generation",
    "replayable",
    "seed_log_bytes",
]
