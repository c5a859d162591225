"""docker-compose.yml, checked without a Docker engine: the Compose specification's JSON schema
(vendored by check-jsonschema), every service command against the real CLI, every PERENNIAL_*
variable against the real settings, health checks, volumes, and the engine on loopback."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from pathlib import Path

import click
import jsonschema
import pytest
import yaml

from learner.settings import LearnerSettings
from perennial.cli import main as cli
from server.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
OURS = {name: s for name, s in COMPOSE["services"].items() if str(s.get("image", "")).startswith("perennial")}


def compose_schema() -> dict:
    path = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def test_valid_against_the_compose_specification():
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_check_can_fail():
    broken = {"services": {"x": {"image": "a", "healthcheck": {"interval": 5, "bogus": True}}}}
    assert list(jsonschema.Draft202012Validator(compose_schema()).iter_errors(broken))


def test_services_and_volumes():
    assert {"postgres", "redis", "engine", "gateway", "learner", "ingest"} <= set(COMPOSE["services"])
    assert {"pgdata", "redisdata", "data"} <= set(COMPOSE["volumes"])
    for name in ("postgres", "redis", "engine", "gateway"):
        assert "healthcheck" in COMPOSE["services"][name], name
    for name in ("engine", "gateway", "learner"):  # snapshots written by one, loaded by another
        assert "data:/data" in COMPOSE["services"][name]["volumes"], name


def parse_cli(args: list[str]) -> click.Context:
    """Parse like the real `perennial` would (unknown commands or options raise)."""
    ctx = click.Context(cli, info_name="perennial")
    command = cli.get_command(ctx, args[0])  # the group itself takes no options
    if command is None:
        raise click.UsageError(f"no such command {args[0]!r}")
    return command.make_context(args[0], list(args[1:]), parent=ctx)


def perennial_args(spec: dict) -> list[str] | None:
    """The ``perennial`` arguments a service runs: its command, or the ``exec perennial ...`` of
    its shell line (the learner starts a Ray head first); None if it runs none (a Ray worker)."""
    if spec.get("entrypoint") == ["sh", "-c"]:
        _, found, rest = " ".join(spec["command"]).partition("exec perennial ")
        return shlex.split(rest) if found else None
    return spec["command"]


@pytest.mark.parametrize("service", sorted(OURS))
def test_commands_exist_in_the_cli(service):
    args = perennial_args(OURS[service])
    if args is None:
        assert service.startswith("ray-")
        return
    parse_cli(args)


def test_the_learner_heads_a_ray_cluster_that_workers_join_with_the_same_volumes():
    learner, worker = COMPOSE["services"]["learner"], COMPOSE["services"]["ray-worker"]
    head = " ".join(learner["command"])
    assert "ray start --head --port 6379" in head and "--dashboard-host 127.0.0.1" in head
    ctx = parse_cli(perennial_args(learner))
    assert ctx.params["ray_address"] == "auto"
    assert "ray start --address learner:6379" in " ".join(worker["command"])
    assert set(worker["volumes"]) == set(learner["volumes"])  # actors read and write the same paths


def test_cli_check_can_fail():
    with pytest.raises(click.UsageError):
        parse_cli(["serve", "--no-such-flag"])
    with pytest.raises(click.UsageError):
        parse_cli(["no-such-command"])


def test_environment_names_are_real_settings():
    known = {f"PERENNIAL_{name.upper()}" for name in (*Settings.model_fields, *LearnerSettings.model_fields)}
    for service, spec in OURS.items():
        names = {k for k in spec.get("environment", {}) if k.startswith("PERENNIAL_")}
        assert names, service
        assert names <= known, (service, sorted(names - known))


def test_the_published_gateway_requires_keys():
    """The gateway listens on 0.0.0.0: compose refuses to start without keys, and so would serve."""
    gateway = COMPOSE["services"]["gateway"]
    host = gateway["command"][gateway["command"].index("--host") + 1]
    assert re.fullmatch(r"\$\{PERENNIAL_API_KEYS:\?[^}]+\}", gateway["environment"]["PERENNIAL_API_KEYS"])
    assert re.fullmatch(
        r"\$\{PERENNIAL_ADMIN_KEY:\?[^}]+\}", OURS["gateway"]["environment"]["PERENNIAL_ADMIN_KEY"]
    )
    assert "PERENNIAL_ALLOW_OPEN" not in gateway["environment"]
    assert Settings(host=host, api_keys="").open_to_network() is not None
    assert Settings(host=host, api_keys="k1,k2").open_to_network() is None


def test_engine_is_reachable_only_through_the_gateway():
    engine, gateway = COMPOSE["services"]["engine"], COMPOSE["services"]["gateway"]
    assert gateway["network_mode"] == "service:engine"
    assert "--host" not in engine["command"]  # `perennial engine` always binds 127.0.0.1
    assert all(not re.match(r"^\d+:8100$", p) for p in engine.get("ports", []))
    url = gateway["command"][gateway["command"].index("--engine-url") + 1]
    assert url.startswith("http://127.0.0.1:")


def test_two_serving_replicas_on_loopback_behind_the_gateway():
    second, gateway = COMPOSE["services"]["engine-1"], COMPOSE["services"]["gateway"]
    assert second["network_mode"] == "service:engine" and "--host" not in second["command"]
    port = second["command"][second["command"].index("--port") + 1]
    assert gateway["environment"]["PERENNIAL_ENGINE_URLS"] == f"http://127.0.0.1:{port}"
    first = gateway["command"][gateway["command"].index("--engine-url") + 1]
    assert Settings(engine_url=first, engine_urls=f"http://127.0.0.1:{port}").attached_engines == [
        "http://127.0.0.1:8100",
        f"http://127.0.0.1:{port}",
    ]
    assert gateway["depends_on"]["engine-1"]["condition"] == "service_healthy"
