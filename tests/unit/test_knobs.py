"""One declaration per knob: the ES knobs are ``weights.config.ESConfig``'s fields and the gate
thresholds ``evals.thresholds.Thresholds``'; the learner's settings, the admin round body, the
OpenAPI document and the CLI flags are derived from them.

These tests do not compare hand-written copies (there are none): they check that the derivation
carries each knob's type, range, default and help to every place, and that a knob added to the
declaration appears in all four without another line (``test_a_new_knob_appears_everywhere``).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field, ValidationError, create_model

from clients import calls
from evals.thresholds import Thresholds
from learner.settings import LearnerSettings
from perennial.cli import knob_options, main
from server.admin.learner import GateOverrides, RoundRequest
from weights.config import ROUND_KNOBS, ConfigError, ESConfig, optional_fields


def metadata(model: type[BaseModel], name: str) -> list:
    return [repr(m) for m in model.model_fields[name].metadata]


@pytest.mark.parametrize("name", ROUND_KNOBS)
def test_each_round_knob_has_one_range_and_help_everywhere(name):
    declared = ESConfig.model_fields[name]
    for model, field in ((RoundRequest, name), (LearnerSettings, f"learner_{name}")):
        copy = model.model_fields[field]
        assert metadata(model, field) == metadata(ESConfig, name), (model, field)
        assert copy.description == declared.description
        assert copy.default is None  # unset: the declaration's default (or the preset's)


@pytest.mark.parametrize("name", list(Thresholds.model_fields))
def test_each_gate_threshold_has_one_range_default_and_help(name):
    declared = Thresholds.model_fields[name]
    assert metadata(GateOverrides, name) == metadata(Thresholds, name)
    setting = LearnerSettings.model_fields[f"gate_{name}"]
    assert setting.default == declared.default and setting.description == declared.description
    assert LearnerSettings().thresholds() == Thresholds()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"sigma": 2.0}, "sigma"),  # the range is ESConfig's (0, 1], in the body as in the config
        ({"max_tokens": 0}, "max_tokens"),
        ({"awd_kind": "l3"}, "awd_kind"),
        ({"gate": {"confidence": 1.0}}, "gate"),
        ({"sigmaa": 1e-3}, "sigmaa"),
    ],
)
def test_the_body_refuses_what_the_config_refuses(body, param):
    with pytest.raises(ValidationError) as err:
        RoundRequest.model_validate(body)
    assert err.value.errors()[0]["loc"][0] == param
    es = {k: v for k, v in body.items() if k != "gate"}
    if es and param != "sigmaa":
        with pytest.raises(ConfigError):
            ESConfig.from_dict(es)


def test_settings_body_and_config_meet_in_one_round_config():
    settings = LearnerSettings(learner_sigma=0.002, learner_awd_kind="l1", learner_seed=5, gate_margin=0.02)
    body = RoundRequest.model_validate({"alpha": 0.003, "gate": {"max_kl": 0.1}})
    config = settings.es_config(7, body.overrides().get("es"))
    assert (config.sigma, config.alpha, config.awd_kind, config.seed) == (0.002, 0.003, "l1", 12)
    assert config.awd_lambda == ESConfig().awd_lambda  # unset everywhere: the declared default
    assert settings.thresholds(body.overrides()["gate"]) == Thresholds(margin=0.02, max_kl=0.1)


def test_the_sdk_passes_knobs_through():
    body = calls.round_overrides(awd_lambda=1.0, awd_kind="l1", sigma=None, gate={"max_kl": 0.1})
    assert body == {"awd_lambda": 1.0, "awd_kind": "l1", "gate": {"max_kl": 0.1}}
    RoundRequest.model_validate(body)


def test_the_cli_flags_are_the_declared_knobs():
    learn = {p.name: p for p in main.commands["learn"].params}
    trigger = {p.name: p for p in main.commands["rounds"].commands["trigger"].params}
    for name in ROUND_KNOBS:
        assert learn[name].help == trigger[name].help == ESConfig.model_fields[name].description
    for name in Thresholds.model_fields:
        assert trigger[f"gate_{name}"].help == Thresholds.model_fields[name].description
    assert "fitness_weights" not in learn  # a mapping: set in a YAML file
    help_text = CliRunner().invoke(main, ["rounds", "trigger", "--help"]).output
    assert "--awd-lambda" in help_text and "--gate-max-total-drop" in help_text


def test_the_openapi_document_shows_the_declared_ranges():
    schema = RoundRequest.model_json_schema()
    sigma = schema["properties"]["sigma"]["anyOf"][0]
    assert (sigma["exclusiveMinimum"], sigma["maximum"]) == (0, 1)
    assert schema["properties"]["awd_kind"]["anyOf"][0]["enum"] == ["l2", "l1"]


def test_a_new_knob_appears_everywhere():
    """Declare a knob once (a subclass stands in for an edit of ESConfig): the settings, the
    body, the OpenAPI schema and the flags all have it, with its range and help."""

    class Grown(ESConfig):
        temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of members.")

    knobs = (*ROUND_KNOBS, "temperature")
    settings = create_model("S", __base__=LearnerSettings, **optional_fields(Grown, knobs, prefix="learner_"))
    body = create_model("B", **optional_fields(Grown, knobs))
    assert settings(learner_temperature=1.5).learner_temperature == 1.5
    with pytest.raises(ValidationError):
        body(temperature=3.0)
    assert body.model_json_schema()["properties"]["temperature"]["anyOf"][0]["maximum"] == 2

    import click

    @click.command()
    def command(**kw):
        click.echo(repr(kw["temperature"]))

    command = knob_options(command, Grown, knobs)
    assert CliRunner().invoke(command, ["--temperature", "0.7"]).output.strip() == "0.7"
    assert "Sampling temperature" in CliRunner().invoke(command, ["--help"]).output


def test_yaml_typed_knobs_are_coerced_and_bad_ones_named(tmp_path):
    path = tmp_path / "es.yaml"
    path.write_text("preset: cpu\nsigma: 2e-3\npopulation: '8'\n")
    assert (ESConfig.from_yaml(path).sigma, ESConfig.from_yaml(path).population) == (2e-3, 8)
    with pytest.raises(ConfigError) as err:
        ESConfig.from_dict({"population": 7})
    assert err.value.field == "population"
