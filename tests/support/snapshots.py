"""Make weight snapshots for tests: the base model with seeded Gaussian noise on its matrices."""

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
