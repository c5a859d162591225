"""Golden tests of the ES + AWD math (weights/es.py): pure torch on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from weights.es import (
    NoiseTable,
    awd_,
    es_step,
    iteration_seeds,
    l2_distance,
    pair_coefficients,
    perturbed,
    tensors_sha256,
    zscore,
)

SHAPES = {"a.weight": (64, 32), "b.weight": (64, 32), "c.bias": (64,)}


@pytest.fixture(scope="module")
def table() -> NoiseTable:
    return NoiseTable(size=1 << 18, seed=0)


def params(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g) for k, s in SHAPES.items()}


def clone(p):
    return {k: v.clone() for k, v in p.items()}


def test_same_seed_gives_same_noise_even_from_a_rebuilt_table(table):
    again = NoiseTable(size=1 << 18, seed=0)
    for name, shape in SHAPES.items():
        assert torch.equal(table.noise(11, name, shape), again.noise(11, name, shape))


def test_different_seeds_give_different_noise(table):
    assert not torch.equal(table.noise(1, "a.weight", (64, 32)), table.noise(2, "a.weight", (64, 32)))


def test_same_shape_tensors_get_uncorrelated_noise(table):
    # The reference code reused one stream per tensor: same-shape tensors got identical noise.
    correlations = []
    for seed in range(50):
        x = table.noise(seed, "a.weight", (64, 32)).flatten()
        y = table.noise(seed, "b.weight", (64, 32)).flatten()
        assert not torch.equal(x, y)
        correlations.append(float(torch.corrcoef(torch.stack([x, y]))[0, 1]))
    # 2048 values: one correlation has std ~ 1/sqrt(2048) = 0.022; their mean ~ 0.003.
    assert max(abs(c) for c in correlations) < 0.12
    assert abs(sum(correlations) / len(correlations)) < 0.02


def test_noise_is_standard_normal(table):
    x = table.values
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01


def test_tensor_larger_than_table_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        NoiseTable(size=1024).noise(0, "big", (2048,))


def test_iteration_seeds_are_reproducible_and_distinct():
    assert iteration_seeds(0, 3, 8) == iteration_seeds(0, 3, 8)
    assert iteration_seeds(0, 3, 8) != iteration_seeds(0, 4, 8)
    assert iteration_seeds(0, 3, 8) != iteration_seeds(1, 3, 8)
    assert len(set(iteration_seeds(5, 0, 15))) == 15


def test_zscore_centres_and_scales_and_handles_ties():
    z = zscore([1.0, 2.0, 3.0, 6.0])
    assert abs(float(z.mean())) < 1e-12 and abs(float(z.std(unbiased=False)) - 1) < 1e-12
    assert torch.equal(zscore([0.5, 0.5, 0.5]), torch.zeros(3, dtype=torch.float64))


def test_perturbed_member_leaves_master_untouched_and_is_exact(table):
    master = params()
    before = clone(master)
    member = dict(perturbed(master, table, 42, 0.01, -1))
    for name, tensor in master.items():
        assert torch.equal(tensor, before[name])
        expected = tensor - 0.01 * table.noise(42, name, tensor.shape)
        assert torch.allclose(member[name], expected, atol=1e-6, rtol=0)
        assert not torch.equal(member[name], tensor)
    again = dict(perturbed(master, table, 42, 0.01, -1))
    assert tensors_sha256(again) == tensors_sha256(member)  # bit-reproducible


def test_antithetic_pair_with_equal_rewards_gives_zero_update(table):
    theta, theta0 = params(), params()
    before = clone(theta)
    coefficients = pair_coefficients([0.7, 0.7, 0.2, 0.2])  # each pair: + and - scored equally
    assert coefficients == [0.0, 0.0]
    stats = es_step(theta, theta0, table, [3, 4], coefficients, alpha=0.1, population=4)
    assert stats.update_norm == 0.0 and stats.update_sparsity == 1.0
    assert all(torch.equal(theta[k], before[k]) for k in theta)


def test_update_matches_the_formula(table):
    theta, theta0 = params(), params(2)
    before = clone(theta)
    fitness = [0.9, 0.1, 0.3, 0.6, 0.5, 0.5]
    seeds = [10, 20, 30]
    z = zscore(fitness)
    coefficients = pair_coefficients(fitness)
    es_step(theta, theta0, table, seeds, coefficients, alpha=0.05, population=6)
    for name, tensor in theta.items():
        # theta += alpha/N sum_n z_n eps_n, with eps of the minus member = -eps of its seed
        expected = before[name].double().clone()
        for i, seed in enumerate(seeds):
            eps = table.noise(seed, name, tensor.shape).double()
            expected += 0.05 / 6 * (float(z[2 * i]) * eps - float(z[2 * i + 1]) * eps)
        assert torch.allclose(tensor.double(), expected, atol=1e-6, rtol=0)


def test_es_improves_a_quadratic(table):
    # Few dimensions, so 16 members estimate the gradient well (cosine ~ sqrt(N / d)).
    shapes = {"a.weight": (6, 4), "b.weight": (6, 4), "c.bias": (6,)}
    target = {k: torch.full(s, 0.5) for k, s in shapes.items()}
    theta = {k: torch.zeros(s) for k, s in shapes.items()}
    theta0 = clone(theta)

    def loss(p) -> float:
        return l2_distance(p, target) ** 2

    start = loss(theta)
    for it in range(40):
        seeds = iteration_seeds(0, it, 8)
        fitness = [-loss(dict(perturbed(theta, table, s, 0.05, sign))) for s in seeds for sign in (1, -1)]
        es_step(theta, theta0, table, seeds, pair_coefficients(fitness), alpha=0.2, population=16)
    assert loss(theta) < 0.25 * start


def test_l2_awd_matches_its_formula_exactly():
    theta, theta0 = torch.randn(100), torch.randn(100)
    expected = theta0 + (1 - 0.02 * 10) * (theta - theta0)
    awd_(theta, theta0, 0.02, 10, "l2")
    assert torch.equal(theta, expected)


def test_l1_awd_soft_thresholds_the_drift():
    theta0 = torch.zeros(6)
    theta = torch.tensor([0.5, -0.5, 0.05, -0.05, 0.1, 0.0])
    awd_(theta, theta0, 0.1, 1.0, "l1")  # threshold alpha * lambda = 0.1
    assert torch.allclose(theta, torch.tensor([0.4, -0.4, 0.0, 0.0, 0.0, 0.0]), atol=1e-7)
    anchor, other = torch.randn(50), torch.randn(50)
    delta = other - anchor
    expected = anchor + delta.sign() * (delta.abs() - 0.03).clamp_min(0)
    awd_(other, anchor, 0.01, 3.0, "l1")
    assert torch.equal(other, expected)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_lambda_zero_is_plain_es(table, kind):
    theta0 = params(2)
    plain, awd = params(), params()
    args = dict(alpha=0.1, population=4)
    es_step(plain, theta0, table, [1, 2], [0.8, -1.1], **args)
    es_step(awd, theta0, table, [1, 2], [0.8, -1.1], awd_lambda=0.0, awd_kind=kind, **args)
    assert tensors_sha256(plain) == tensors_sha256(awd)


def test_awd_reduces_drift_and_reports_it(table):
    theta0 = params(2)
    plain, decayed = clone(theta0), clone(theta0)
    for it in range(5):
        seeds = iteration_seeds(1, it, 2)
        es_step(plain, theta0, table, seeds, [1.0, -1.0], alpha=0.1, population=4)
        stats = es_step(
            decayed, theta0, table, seeds, [1.0, -1.0], alpha=0.1, population=4, awd_lambda=2.0, awd_kind="l2"
        )
    assert stats.drift == pytest.approx(
        l2_distance(decayed, theta0), rel=1e-5
    )  # the step sums float32 norms of slices
    assert l2_distance(decayed, theta0) < l2_distance(plain, theta0)


def test_l1_awd_makes_the_drift_sparse(table):
    theta0 = params(2)
    theta = clone(theta0)
    stats = es_step(theta, theta0, table, [5], [1.0], alpha=0.01, population=2, awd_lambda=0.5, awd_kind="l1")
    # The step is |0.005 * eps|; the threshold 0.005 zeroes the drift wherever |eps| <= 1.
    share_small = float((table.noise(5, "a.weight", (64, 32)).abs() <= 1).float().mean())
    assert stats.drift_sparsity > 0.6 and share_small > 0.6
    assert stats.update_norm == pytest.approx(stats.drift, rel=1e-9)  # one step from theta0


def test_step_stats_report_norm_and_sparsity(table):
    theta0 = params(2)
    theta = clone(theta0)
    before = clone(theta)
    stats = es_step(theta, theta0, table, [7], [2.0], alpha=0.1, population=2)
    assert stats.update_norm == pytest.approx(l2_distance(theta, before), rel=1e-5)
    assert stats.numel == sum(math.prod(s) for s in SHAPES.values())
    assert stats.update_sparsity < 0.01


def test_tensors_sha256_sees_every_bit():
    p = params()
    digest = tensors_sha256(p)
    p["a.weight"][0, 0] = torch.nextafter(p["a.weight"][0, 0], torch.tensor(10.0))
    assert tensors_sha256(p) != digest


@pytest.mark.parametrize(("kind", "lam"), [("l2", 2.0), ("l1", 0.05), ("l2", 0.0)])
def test_a_step_in_slices_gives_the_same_weights_bit_for_bit(table, kind, lam):
    """The CPU step runs each tensor in cache-sized slices: the same operations per value in the
    same order, so the master (and a replay of the seed log) is the same whatever the slicing.
    Slices of 100 values cut every tensor here mid-row and off the vector width."""
    theta0 = params(2)
    whole, sliced = params(), params()
    seeds, coefficients = iteration_seeds(3, 0, 4), [0.7, -1.3, 0.0, 2.2]
    args = dict(alpha=0.05, population=8, awd_lambda=lam, awd_kind=kind)
    a = es_step(whole, theta0, table, seeds, coefficients, chunk=10**9, **args)
    b = es_step(sliced, theta0, table, seeds, coefficients, chunk=100, **args)
    assert tensors_sha256(whole) == tensors_sha256(sliced)
    assert tensors_sha256(whole) != tensors_sha256(params())  # the step moved it
    assert (a.update_sparsity, a.drift_sparsity, a.numel) == (b.update_sparsity, b.drift_sparsity, b.numel)
    assert a.update_norm == pytest.approx(b.update_norm, rel=1e-5)
    assert a.drift == pytest.approx(b.drift, rel=1e-5)
