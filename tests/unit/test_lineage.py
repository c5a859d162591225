"""Seed-log replay (weights.lineage): a chain of ES(+AWD) generations rebuilt bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from weights.es import NoiseTable, es_step, iteration_seeds, pair_coefficients, tensors_sha256
from weights.lineage import Generation, RebuildError, rebuild, replayable, seed_log_bytes
from weights.meta import NoiseSpec, SnapshotMeta
from weights.snapshot import WEIGHTS, load_tensors, write_snapshot

TABLE = (1 << 14, 3)  # a small noise table: (size, seed)


def make_base(root: Path) -> Path:
    base = root / "base"
    base.mkdir()
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "embed.weight": torch.randn(64, 16, generator=gen),
        "layers.0.weight": torch.randn(16, 16, generator=gen),
        "norm.weight": torch.ones(16),
    }
    save_file(tensors, str(base / WEIGHTS), {"format": "pt"})
    (base / "config.json").write_text(json.dumps({"model_type": "tiny", "torch_dtype": "float32"}))
    return base


def make_chain(root: Path, base: Path, lambdas: list[float]) -> list[Generation]:
    """Generations v1..vn as a learner round makes them: ES(+AWD) steps on the parent, snapshot."""
    table = NoiseTable(*TABLE)
    theta0 = load_tensors(base)
    theta = {k: v.clone() for k, v in theta0.items()}
    parent, chain = "base", []
    for g, lam in enumerate(lambdas, start=1):
        config = {"alpha": 0.05, "sigma": 0.01, "population": 4, "awd_lambda": lam, "awd_kind": "l2"}
        seeds, coefficients = [], []
        for it in range(3):
            s = iteration_seeds(100 + g, it, 2)
            c = pair_coefficients([0.3 * it, -0.1, 0.7, 0.2 * g])
            es_step(theta, theta0, table, s, c, alpha=0.05, population=4, awd_lambda=lam)
            seeds.append(s)
            coefficients.append(c)
        meta = SnapshotMeta(
            parent=parent,
            base="base",
            config=config,
            seeds=seeds,
            coefficients=coefficients,
            noise=NoiseSpec(size=TABLE[0], seed=TABLE[1]),
        )
        written = write_snapshot(root / f"v{g}", theta, base, meta)
        chain.append(Generation(f"v{g}", written))
        parent = f"v{g}"
    return chain


def test_a_three_generation_chain_with_awd_rebuilds_bit_for_bit(tmp_path):
    base = make_base(tmp_path)
    chain = make_chain(tmp_path, base, [0.0, 0.5, 0.0])
    recorded = (tmp_path / "v3" / WEIGHTS).read_bytes()
    recorded_meta = (tmp_path / "v3" / "meta.json").read_text()
    for g in ("v2", "v3"):
        (tmp_path / g / WEIGHTS).unlink()
    seen = []
    report = rebuild(
        chain[1:],
        start="v1",
        start_dir=tmp_path / "v1",
        base_dir=base,
        out_dir=tmp_path / "v3",
        progress=seen.append,
    )
    assert (tmp_path / "v3" / WEIGHTS).read_bytes() == recorded
    assert (tmp_path / "v3" / "meta.json").read_text() == recorded_meta  # the record, not a new stamp
    assert report.generations == ["v2", "v3"] and report.iterations == 6
    assert report.sha256 == chain[-1].meta.sha256
    assert seen[-1] == {"version": "v3", "generation": 2, "generations": 2, "iteration": 3, "iterations": 3}


def test_rebuild_from_the_base_replays_the_whole_chain(tmp_path):
    base = make_base(tmp_path)
    chain = make_chain(tmp_path, base, [0.2, 0.0, 1.0])
    want = tensors_sha256(load_tensors(tmp_path / "v3"))
    out = tmp_path / "again"
    rebuild(chain, start="base", start_dir=base, base_dir=base, out_dir=out)
    assert tensors_sha256(load_tensors(out)) == want
    assert tensors_sha256(load_tensors(base)) == tensors_sha256(load_tensors(tmp_path / "base"))


def test_a_wrong_seed_log_is_refused_not_written(tmp_path):
    base = make_base(tmp_path)
    chain = make_chain(tmp_path, base, [0.0, 0.0])
    meta = chain[1].meta.model_copy(
        update={"coefficients": [[c * 1.0001 for c in row] for row in chain[1].meta.coefficients]}
    )
    with pytest.raises(RebuildError, match="v2's seed log"):
        rebuild(
            [chain[0], Generation("v2", meta)],
            start="base",
            start_dir=base,
            base_dir=base,
            out_dir=tmp_path / "bad",
        )
    assert not (tmp_path / "bad").exists()


def test_a_log_without_its_constants_or_checksum_is_not_replayable():
    meta = SnapshotMeta(parent="base", config={"alpha": 0.1}, seeds=[[1]], coefficients=[[0.5]])
    assert "population" in replayable(meta)
    meta = SnapshotMeta(
        parent="base", config={"alpha": 0.1, "population": 2}, seeds=[[1]], coefficients=[[0.5]]
    )
    assert "tensors_sha256" in replayable(meta)


def test_a_seed_log_is_kilobytes(tmp_path):
    base = make_base(tmp_path)
    chain = make_chain(tmp_path, base, [0.0])
    assert seed_log_bytes(chain[0].meta) < 4096
