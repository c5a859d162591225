"""Weight snapshots for tests and benches: the base model with seeded Gaussian noise on its matrices."""

from __future__ import annotations

import shutil
from pathlib import Path


def perturbed_snapshot(base_dir: Path, out_dir: Path, *, seed: int, scale: float) -> Path:
    """Copy ``base_dir`` to ``out_dir`` with ``scale * std(w)`` noise added to every matrix."""
    import torch
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    for item in base_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy2(item, out_dir / item.name)
    generator = torch.Generator().manual_seed(seed)
    for weights in base_dir.glob("*.safetensors"):
        tensors = load_file(weights)
        for name, tensor in tensors.items():
            if tensor.ndim == 2:
                noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                tensors[name] = tensor + scale * tensor.std() * noise
        save_file(tensors, out_dir / weights.name, metadata={"format": "pt"})
    return out_dir


def seed_log_snapshot(base_dir: Path, out_dir: Path, *, seed: int, awd_lambda: float = 0.5):
    """A version as a learner round makes it, without an engine: one ES + AWD step on the base
    (the same ``weights.es`` arithmetic the learner engine runs), written with its seed log.
    Returns the written ``SnapshotMeta``."""
    from weights.es import NoiseTable, es_step, iteration_seeds, pair_coefficients
    from weights.meta import NoiseSpec, SnapshotMeta
    from weights.snapshot import load_tensors, write_snapshot

    theta0 = load_tensors(base_dir)
    theta = {k: v.clone() for k, v in theta0.items()}
    table = NoiseTable()
    config = {"alpha": 2e-3, "sigma": 1e-3, "population": 4, "awd_lambda": awd_lambda, "awd_kind": "l2"}
    seeds = iteration_seeds(seed, 0, 2)
    coefficients = pair_coefficients([1.0, -1.0, 0.5, 0.0])
    es_step(theta, theta0, table, seeds, coefficients, alpha=2e-3, population=4, awd_lambda=awd_lambda)
    meta = SnapshotMeta(
        parent="base",
        base="base",
        config=config,
        seeds=[seeds],
        coefficients=[coefficients],
        noise=NoiseSpec(),
    )
    return write_snapshot(out_dir, theta, base_dir, meta)
