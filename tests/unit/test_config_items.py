"""ESConfig validation and presets; the JSONL item format."""

from __future__ import annotations

import json

import pytest

from learner.items import ItemError, RatedItem, VerifiableItem, load_items, parse_item
from weights.config import ConfigError, ESConfig


def test_defaults_are_the_papers():
    c = ESConfig()
    assert (c.population, c.sigma, c.alpha, c.awd_lambda, c.awd_kind) == (30, 1e-3, 5e-4, 10.0, "l2")
    assert c.pairs == 15


def test_cpu_preset_and_overrides():
    c = ESConfig.preset("cpu", awd_lambda=5.0, seed=None)
    assert (c.population, c.sigma, c.alpha, c.awd_lambda, c.seed) == (16, 3e-3, 4e-3, 5.0, 0)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"population": 15}, "population"),
        ({"population": 0}, "population"),
        ({"sigma": 0}, "sigma"),
        ({"alpha": -1}, "alpha"),
        ({"awd_kind": "l3"}, "awd_kind"),
        ({"awd_lambda": -0.1}, "awd_lambda"),
        ({"awd_lambda": 2000.0}, "awd_lambda"),  # alpha * lambda >= 1 overshoots theta0
        ({"minibatch": 0}, "minibatch"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"fitness_weights": {"verifiable": 0, "likelihood": 0}}, "fitness_weights"),
        ({"fitness_weights": {"accuracy": 1}}, "fitness_weights"),
        ({"sigmaa": 1e-3}, "sigmaa"),
        ({"population": "many"}, "population"),
        ({"iterations": 2.5}, "iterations"),
    ],
)
def test_invalid_values_name_their_field(values, field):
    with pytest.raises(ConfigError) as err:
        ESConfig.from_dict(values)
    assert err.value.field == field


def test_l1_allows_large_lambda_times_alpha():
    assert ESConfig(awd_kind="l1", awd_lambda=5000.0).awd_lambda == 5000.0


def test_yaml_with_preset_and_dotless_exponents(tmp_path):
    path = tmp_path / "es.yaml"
    path.write_text("preset: cpu\nsigma: 2e-3\nawd_lambda: 10\nawd_kind: l2\n")
    c = ESConfig.from_yaml(path, iterations=3, alpha=None)
    assert (c.sigma, c.alpha, c.awd_lambda, c.iterations, c.population) == (2e-3, 4e-3, 10.0, 3, 16)
    assert c.to_dict()["sigma"] == 2e-3


def write(tmp_path, rows):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_items_file_with_all_kinds(tmp_path):
    path = write(
        tmp_path,
        [
            {"prompt": "What is 2 + 2?", "reference": "4", "verifier": "number"},
            "",
            "# a comment",
            {
                "messages": [{"role": "user", "content": "Capital of France?"}],
                "completion": "Paris.",
                "reward": -0.5,
                "id": "r1",
            },
            {"prompt": "Say hi", "correction": "Hi!"},
        ],
    )
    items = load_items(path)
    assert len(items) == 3
    assert isinstance(items.verifiable[0], VerifiableItem) and items.verifiable[0].id == "line-1"
    assert items.rated[0] == RatedItem(
        "r1", ({"role": "user", "content": "Capital of France?"},), "Paris.", -0.5
    )
    assert items.rated[1].reward == 1.0 and items.rated[1].completion == "Hi!"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"prompt": "x", "reference": "abc", "verifier": "number"}, "reference"),
        ({"prompt": "x", "reference": "4", "verifier": "nope"}, "verifier"),
        ({"prompt": "x", "completion": "y", "reward": 2}, "reward"),
        ({"prompt": "x", "completion": "y"}, "reward"),
        ({"prompt": "x", "reference": "4", "extra": 1}, "extra"),
        ({"messages": [{"role": "assistant", "content": "hi"}], "reference": "4"}, "messages"),
        ({"prompt": "x", "messages": [], "reference": "4"}, "messages"),
        ({"prompt": "x", "reference": "4", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_items_name_line_and_field(obj, field):
    with pytest.raises(ItemError) as err:
        parse_item(obj, 7)
    assert err.value.line == 7 and err.value.field == field and "line 7" in str(err.value)


def test_item_without_target_is_rejected(tmp_path):
    with pytest.raises(ItemError, match="line 2"):
        load_items(write(tmp_path, [{"prompt": "a", "reference": "b"}, {"prompt": "no target"}]))
    with pytest.raises(ItemError, match="invalid JSON"):
        load_items(write(tmp_path, ["{not json"]))


def test_shipped_addition_task_parses():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "evals" / "tasks" / "addition"
    train, heldout = load_items(root / "train.jsonl"), load_items(root / "heldout.jsonl")
    assert len(train.verifiable) == 200 and len(heldout.verifiable) == 100
    prompts = {i.messages[0]["content"] for i in train.verifiable}
    assert not prompts & {i.messages[0]["content"] for i in heldout.verifiable}
