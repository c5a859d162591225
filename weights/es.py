"""Evolution Strategies + Anchored Weight Decay: the math, as pure torch functions (no I/O).

Parameters are dicts ``name -> float32 tensor`` keyed by checkpoint names. The same functions
run in the unit tests and inside the learner engine's worker, so what the tests check is what
the engine does.

Noise. ``eps(seed, name)`` is a slice of one shared Gaussian table (Salimans et al. 2017): the
table is drawn once from a fixed seed; each (seed, tensor name) hashes to its own offset, so
every tensor gets an independent stream (the reference ES code reused one stream per tensor,
which gave same-shape tensors identical noise). Reading a slice costs about 1/14 of drawing
fresh Gaussians on our CPUs (0.056 s against 0.74-0.78 s for the whole model), and seeds stay the only thing that travels.

Update (Qiu et al. 2025), with antithetic pairs ``+eps_i`` / ``-eps_i``::

    z = zscore(fitness of the N members)
    theta += alpha / N * sum_n z_n eps_n  =  alpha / N * sum_i (z_i+ - z_i-) eps_i

AWD after the step (Schweighofer et al. 2026), anchored to the base ``theta0``::

    L2: theta = theta0 + (1 - alpha * lambda) * (theta - theta0)
    L1: theta = theta0 + soft_threshold(theta - theta0, alpha * lambda)

``lambda = 0`` is plain ES.

>>> table = NoiseTable(size=1 << 12, seed=0)
>>> theta = {"w": torch.zeros(4)}
>>> stats = es_step(theta, theta, table, [7], [0.0], alpha=0.1, population=2)
>>> stats.update_norm
0.0
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from weights.meta import AWD_KINDS, NOISE_TABLE_SIZE

Params = Mapping[str, torch.Tensor]
SPARSITY_EPS = 1e-6
# values per slice of an ES step on a CPU (es_step): 1 MB of fp32, so a slice's working set fits
# in a core's L2 cache
STEP_CHUNK = 1 << 18


class NoiseTable:
    """One float32 block of standard Gaussians; ``noise(seed, name, shape)`` views into it.

    Args:
        size: number of values; must exceed the largest tensor (SmolLM2's embedding holds
            28.3M values; the default 2**26 is 256 MB).
        seed: the table's own seed; every process that uses the same (size, seed) holds the
            same table (drawn on the CPU, so GPU and CPU engines agree).
        device: where the table lives once drawn: the device of the parameters it perturbs.
    """

    def __init__(self, size: int = NOISE_TABLE_SIZE, seed: int = 0, device: str | torch.device = "cpu"):
        if size < 2:
            raise ValueError("noise table size must be >= 2")
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.size = size
        self.seed = seed
        self.values = torch.randn(size, generator=generator, dtype=torch.float32).to(device)

    def offset(self, seed: int, name: str, numel: int) -> int:
        """Start of the stream for (seed, tensor name): a hash, so streams are independent."""
        if numel > self.size:
            raise ValueError(f"tensor {name!r} ({numel} values) exceeds the noise table ({self.size})")
        digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % (self.size - numel + 1)

    def noise(self, seed: int, name: str, shape: torch.Size | Sequence[int]) -> torch.Tensor:
        """A read-only view of the table: eps(seed, name), shaped like the tensor."""
        numel = math.prod(shape)
        start = self.offset(seed, name, numel)
        return self.values[start : start + numel].view(*shape)


def iteration_seeds(run_seed: int, iteration: int, pairs: int) -> list[int]:
    """The ``pairs`` noise seeds of one iteration, derived from the run seed (reproducible)."""
    generator = torch.Generator().manual_seed(run_seed * 1_000_003 + iteration)
    return torch.randint(0, 2**31 - 1, (pairs,), generator=generator).tolist()


def zscore(values: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std over the population (float64); all-equal values give zeros."""
    x = torch.as_tensor(values, dtype=torch.float64)
    std = x.std(unbiased=False)
    if x.numel() < 2 or not torch.isfinite(std) or std < 1e-12:
        return torch.zeros_like(x)
    return (x - x.mean()) / std


def pair_coefficients(fitness: Sequence[float]) -> list[float]:
    """Per-seed coefficients ``z_i+ - z_i-`` from fitness ordered ``[s0+, s0-, s1+, s1-, ...]``."""
    if len(fitness) % 2:
        raise ValueError("antithetic fitness needs an even number of members")
    z = zscore(fitness)
    return (z[0::2] - z[1::2]).tolist()


def perturbed(
    theta: Params,
    table: NoiseTable,
    seed: int,
    sigma: float,
    sign: int,
    out: Mapping[str, torch.Tensor] | None = None,
) -> Iterable[tuple[str, torch.Tensor]]:
    """Yield ``(name, theta + sign * sigma * eps(seed, name))`` without touching ``theta``.

    ``out`` gives preallocated buffers (one per name, reused across members) so a member
    costs one fused add per tensor and no allocation.
    """
    if sign not in (1, -1):
        raise ValueError("sign must be +1 or -1")
    for name, tensor in theta.items():
        eps = table.noise(seed, name, tensor.shape)
        buf = out[name] if out is not None else torch.empty_like(tensor)
        torch.add(tensor, eps, alpha=sign * sigma, out=buf)
        yield name, buf


@dataclass(frozen=True)
class StepStats:
    """What one ES(+AWD) step did; norms are L2 over all parameters."""

    update_norm: float  # ||theta_new - theta_old||
    update_sparsity: float  # share of |theta_new - theta_old| < 1e-6
    drift: float  # ||theta_new - theta0||
    drift_sparsity: float  # share of |theta_new - theta0| < 1e-6
    numel: int


def awd_(theta: torch.Tensor, theta0: torch.Tensor, alpha: float, lam: float, kind: str) -> None:
    """Anchored weight decay of one tensor, in place. ``lam == 0`` leaves it unchanged."""
    if kind not in AWD_KINDS:
        raise ValueError(f"awd kind must be one of {AWD_KINDS}")
    if lam == 0:
        return
    shrink = alpha * lam
    if kind == "l2":  # theta0 + (1 - shrink) * (theta - theta0), in place: the same roundings
        theta.sub_(theta0).mul_(1 - shrink).add_(theta0)
    else:
        delta = theta - theta0
        theta.copy_(theta0 + delta.sign() * (delta.abs() - shrink).clamp_min(0))


def es_step(
    theta: dict[str, torch.Tensor] | Params,
    theta0: Params,
    table: NoiseTable,
    seeds: Sequence[int],
    coefficients: Sequence[float],
    *,
    alpha: float,
    population: int,
    awd_lambda: float = 0.0,
    awd_kind: str = "l2",
    chunk: int | None = None,
) -> StepStats:
    """``theta += alpha/N * sum_i c_i eps_i``, then AWD towards ``theta0``; in place.

    Args:
        theta: fp32 master parameters, updated in place.
        theta0: the anchor (base) parameters, same names and shapes.
        table: the shared noise table.
        seeds: one seed per antithetic pair.
        coefficients: ``z_i+ - z_i-`` per seed (see ``pair_coefficients``).
        alpha: learning rate.
        population: N, the number of members (2 * pairs for antithetic sampling).
        awd_lambda: AWD strength; 0 is plain ES.
        awd_kind: ``"l2"`` or ``"l1"``.
        chunk: values per slice of a tensor the whole step runs on before the next (default
            ``STEP_CHUNK`` on a CPU, whole tensors on a GPU). Every value goes through the same
            operations in the same order whatever the slicing, so the weights are the same bit
            for bit; on a CPU a slice's working set (theta, theta0, the noise slices, the
            temporaries) stays in the core's cache instead of streaming each operation through
            memory (``bench/es_math.py``).

    Returns:
        StepStats with the update norm and sparsity and the drift from ``theta0``.
    """
    if len(seeds) != len(coefficients):
        raise ValueError("one coefficient per seed")
    if population <= 0:
        raise ValueError("population must be positive")
    if awd_kind not in AWD_KINDS:
        raise ValueError(f"awd kind must be one of {AWD_KINDS}")
    scale = alpha / population
    upd_sq = drift_sq = 0.0
    upd_small = drift_small = numel = 0
    steps = [(seed, scale * coef) for seed, coef in zip(seeds, coefficients, strict=True) if coef != 0.0]
    for name, tensor in theta.items():
        noise = [(table.noise(seed, name, tensor.shape).reshape(-1), a) for seed, a in steps]
        flat, anchor = tensor.view(-1), theta0[name].reshape(-1)
        size = chunk or (STEP_CHUNK if tensor.device.type == "cpu" else flat.numel())
        for start in range(0, flat.numel(), size):
            part = flat[start : start + size]
            before = part.clone()
            for eps, a in noise:
                part.add_(eps[start : start + size], alpha=a)
            base = anchor[start : start + size]
            awd_(part, base, alpha, awd_lambda, awd_kind)
            delta = before.sub_(part).neg_()
            drift = part - base
            # a slice's norm in float32 (about 1e-6 relative at most), the slices' squares summed in float64
            upd_sq += float(torch.linalg.vector_norm(delta)) ** 2
            drift_sq += float(torch.linalg.vector_norm(drift)) ** 2
            upd_small += int(torch.count_nonzero(delta.abs() < SPARSITY_EPS))
            drift_small += int(torch.count_nonzero(drift.abs() < SPARSITY_EPS))
        numel += tensor.numel()
    return StepStats(
        update_norm=math.sqrt(upd_sq),
        update_sparsity=upd_small / max(numel, 1),
        drift=math.sqrt(drift_sq),
        drift_sparsity=drift_small / max(numel, 1),
        numel=numel,
    )


def l2_distance(a: Params, b: Params) -> float:
    """||a - b||_2 over all tensors (float64 accumulation)."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(a[k] - b[k], dtype=torch.float64)) ** 2 for k in a))


def tensors_sha256(params: Params) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order.

    Identifies weights independently of the file format, so the worker's master, a snapshot
    read back from disk and a replay of the seed log can be compared exactly.
    """
    digest = hashlib.sha256()
    for name in sorted(params):
        tensor = params[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())  # buffer view, no copy
    return digest.hexdigest()
