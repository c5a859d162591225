"""Snapshots are plain HF model directories: transformers loads exactly the tensors written."""

from __future__ import annotations

import json

import pytest
import torch

from weights.es import tensors_sha256
from weights.meta import SnapshotMeta, read_meta
from weights.prep import weights_sha256
from weights.snapshot import load_tensors, write_snapshot


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    (path / "chat_template.jinja").write_text("{{ messages }}")
    return path


def test_snapshot_round_trip_through_transformers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    tensors = load_tensors(tiny_model_dir)
    assert "lm_head.weight" not in tensors  # tied: only the embedding is stored
    for t in tensors.values():
        t.add_(0.125)
    out = tmp_path / "snap"
    meta = write_snapshot(out, tensors, tiny_model_dir, SnapshotMeta(parent="tiny", seeds=[[1, 2]]))
    assert (out / "chat_template.jinja").is_file() and (out / "config.json").is_file()
    assert read_meta(out) == meta and meta.parent == "tiny" and meta.seeds == [[1, 2]]
    assert meta.sha256 == weights_sha256(out) and meta.created_at
    assert meta.tensors_sha256 == tensors_sha256(load_tensors(out)) == tensors_sha256(tensors)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    state = model.state_dict()
    for name, tensor in tensors.items():
        assert torch.equal(state[name], tensor)
    assert torch.equal(state["lm_head.weight"], tensors["model.embed_tokens.weight"])
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


def test_snapshot_replaces_atomically(tiny_model_dir, tmp_path):
    tensors = load_tensors(tiny_model_dir)
    out = tmp_path / "snap"
    write_snapshot(out, tensors, tiny_model_dir, SnapshotMeta(parent="one"))
    write_snapshot(out, tensors, tiny_model_dir, SnapshotMeta(parent="two"))
    assert read_meta(out).parent == "two"
    assert not (tmp_path / ".snap.tmp").exists()


def test_loaded_tensors_are_copy_on_write(tiny_model_dir):
    # The worker updates its master in place; the parent's file must never change.
    before = weights_sha256(tiny_model_dir)
    tensors = load_tensors(tiny_model_dir)
    for t in tensors.values():
        t.mul_(3.0)
    assert weights_sha256(tiny_model_dir) == before
    assert tensors_sha256(load_tensors(tiny_model_dir)) != tensors_sha256(tensors)
