"""One declaration per knob: the ES knobs are ``learner.config.ESConfig``'s fields and the gate
thresholds are ``learner.gate.Thresholds``' fields; every other place that names them (the
learner's settings, the admin API body, the SDK, both CLIs) must agree, with one spelling.

The gateway and the clients may not import the learner (``test_imports.py``), so they cannot
derive their copies; this test is what keeps them equal.
"""

from __future__ import annotations

import dataclasses
import inspect

from click.testing import CliRunner

from clients import calls
from clients.cli_admin import runs_trigger
from learner.config import ES_KNOBS, ESConfig
from learner.gate import Thresholds
from learner.settings import LearnerSettings
from perennial.cli import main
from server.admin.learner import GateOverrides, RoundRequest

ES_FIELDS = {f.name for f in dataclasses.fields(ESConfig)}
GATE_FIELDS = {f.name for f in dataclasses.fields(Thresholds)}
# What a round may override: the knobs an operator tunes per round (not seeds or table sizes).
ROUND_KNOBS = {"iterations", "population", "sigma", "alpha", "awd_lambda", "awd_kind", "minibatch",
               "max_tokens"}  # fmt: skip


def option_names(command) -> set[str]:
    return {p.name for p in command.params}


def test_the_round_body_names_es_knobs_and_gate_thresholds():
    assert set(RoundRequest.model_fields) - {"gate"} == ROUND_KNOBS <= ES_FIELDS
    assert set(GateOverrides.model_fields) == GATE_FIELDS
    assert all(not f.alias for f in RoundRequest.model_fields.values())  # one spelling


def test_the_round_body_types_match_the_config():
    hints = {name: kind for name, kind, _ in ES_KNOBS}
    for name in ROUND_KNOBS:
        annotation = str(RoundRequest.model_fields[name].annotation)
        expected = hints[name].__name__ if hints[name] is not str else "Literal"
        assert expected in annotation, (name, annotation)


def test_the_learner_settings_carry_each_round_knob_into_the_config():
    settings_fields = {name.removeprefix("learner_") for name in LearnerSettings.model_fields}
    assert ROUND_KNOBS | {"seed"} <= settings_fields
    values = {"iterations": 3, "population": 6, "sigma": 0.002, "alpha": 0.003, "awd_lambda": 2.0,
              "awd_kind": "l1", "minibatch": 5, "max_tokens": 7, "seed": 11}  # fmt: skip
    settings = LearnerSettings(**{f"learner_{k}": v for k, v in values.items()})
    config = settings.es_config(run_id=0)
    assert {k: getattr(config, k) for k in values} == values


def test_the_learner_settings_default_to_the_gate_thresholds():
    defaults = Thresholds()
    settings = LearnerSettings()
    for name in GATE_FIELDS:
        assert getattr(settings, f"gate_{name}") == getattr(defaults, name), name
    assert dataclasses.asdict(settings.thresholds()) == dataclasses.asdict(defaults)


def test_the_sdk_sends_the_same_names():
    params = set(inspect.signature(calls.round_overrides).parameters) - {"gate"}
    assert params == ROUND_KNOBS
    body = calls.round_overrides(awd_lambda=1.0, awd_kind="l1", gate={"max_kl": 0.1})
    RoundRequest.model_validate(body)  # the server accepts exactly what the SDK sends
    assert body == {"awd_lambda": 1.0, "awd_kind": "l1", "gate": {"max_kl": 0.1}}


def test_the_admin_cli_flags_are_the_round_knobs_and_gate_thresholds():
    names = option_names(runs_trigger)
    assert names >= ROUND_KNOBS
    assert {n.removeprefix("gate_") for n in names if n.startswith("gate_")} == GATE_FIELDS


def test_perennial_learn_has_a_flag_per_scalar_knob():
    learn = main.commands["learn"]
    assert {name for name, _, _ in ES_KNOBS} <= option_names(learn)
    help_text = CliRunner().invoke(main, ["learn", "--help"]).output
    assert "--awd-lambda" in help_text and "--awd-kind" in help_text
    for name, _, text in ES_KNOBS:  # each flag shows the help declared with its field
        assert text and text.split("(")[0].strip()[:30] in help_text.replace("\n", " "), name
