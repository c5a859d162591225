"""The ``perennial`` command.

    perennial serve [--host H] [--port P] [--data-dir D]   # gateway + engine (+ learner)
    perennial model prepare [--data-dir D]                  # convert the bundled model once
    perennial ingest [--consumers N]                        # persist the Redis ingest stream
    perennial learn --model DIR --items FILE --out DIR      # ES + AWD run -> snapshot
    perennial learner [--data-dir D] [--ray auto|ADDRESS]   # production: rounds + scheduler
    perennial engine [--port P] [--data-dir D]              # production: the serving engine alone
    perennial chat | feedback | versions | promote | rollback | rounds | suites  # clients (--url)
    perennial simulate --url U --task addition --count N    # simulated users: chats + feedback

Each process has one entry module here, named for it: ``perennial/serve.py``, ``engine.py``,
``learner.py``, ``ingest.py``, ``learn.py``, ``simulate.py``. Every option also has a
``PERENNIAL_*`` environment variable (see .env.example); flags win.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError


def _settings(cls=None, **overrides):
    """Validated settings (the gateway's unless ``cls``); flags override the environment."""
    if cls is None:
        from server.settings import Settings as cls

    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            click.echo(f"error: invalid setting PERENNIAL_{field.upper()}: {error['msg']}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Perennial: an online continual-learning server for LLMs.

    Client commands (chat, feedback, versions, promote, rollback, rounds, suites) talk to a running
    gateway: --url / PERENNIAL_URL, --api-key / PERENNIAL_API_KEY, --admin-key /
    PERENNIAL_ADMIN_KEY. Exit codes: 0 ok; 1 the server answered an error (or a round failed);
    2 usage error; 3 cannot connect to the server; 4 timed out.
    """


@main.command()
@click.option("--host", help="Interface to bind (PERENNIAL_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (PERENNIAL_PORT, default 8000; 0 = any free).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
@click.option("--model-dir", type=click.Path(path_type=Path), help="Serve this HF model directory.")
@click.option("--engine-url", help="Attach to a running vLLM server instead of starting one.")
def serve(host, port, data_dir, model_dir, engine_url) -> None:
    """Run the gateway and its serving engine (the embedded default needs no other setup)."""
    from perennial.serve import serve as run

    run(_settings(host=host, port=port, data_dir=data_dir, model_dir=model_dir, engine_url=engine_url))


@main.command()
@click.option("--port", type=int, help="Engine port on 127.0.0.1 (PERENNIAL_ENGINE_PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
@click.option("--model-dir", type=click.Path(path_type=Path), help="Serve this HF model directory.")
def engine(port, data_dir, model_dir) -> None:
    """Run the supervised vLLM serving engine alone, on loopback (the gateway attaches to it)."""
    from perennial.engine import main as run

    run(_settings(engine_port=port, data_dir=data_dir, model_dir=model_dir))


def ray_options(settings: str):
    """``--ray`` and ``--ray-actors`` (docs/ray.md); ``settings`` names the settings they set, if any."""

    def decorate(command):
        command = click.option(
            "--ray-actors", type=int, help="Learner engines on Ray (default: one per GPU, or per CPU)."
        )(command)
        return click.option(
            "--ray",
            "ray_address",
            metavar="local|auto|ADDRESS",
            help=f"Spread each iteration's population over learner engines on Ray{settings}.",
        )(command)

    return decorate


@main.command("learner")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
@click.option("--gateway-url", help="Gateway that promotes candidates (PERENNIAL_GATEWAY_URL).")
@ray_options(" (PERENNIAL_LEARNER_RAY, PERENNIAL_LEARNER_RAY_ACTORS)")
def learner_process(data_dir, gateway_url, ray_address, ray_actors) -> None:
    """Run learner rounds and their scheduler as their own process (production)."""
    from learner.settings import LearnerSettings
    from perennial.learner import main as run

    run(
        _settings(
            LearnerSettings,
            data_dir=data_dir,
            gateway_url=gateway_url,
            learner_ray=ray_address,
            learner_ray_actors=ray_actors,
        )
    )


@main.group()
def model() -> None:
    """Model preparation."""


@model.command("prepare")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
def model_prepare(data_dir) -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a safetensors directory (once)."""
    import logging

    from weights.prep import ModelPrepError, read_record, resolve_model_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = _settings(data_dir=data_dir)
    try:
        path = resolve_model_dir(settings.model_dir, settings.models_dir)
    except ModelPrepError as exc:
        raise click.ClickException(str(exc)) from exc
    record = read_record(path) or {}
    click.echo(f"{path}  sha256={record.get('sha256', 'n/a')}")


@main.command()
@click.option("--consumers", type=int, default=1, show_default=True, help="Consumer tasks.")
def ingest(consumers) -> None:
    """Persist interactions and feedback from the Redis stream (no gateway, no engine)."""
    from perennial.ingest import main as run

    try:
        run(_settings(), consumers)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


_PATH = click.Path(path_type=Path)


def knob_options(command, model, names=None, *, prefix: str = ""):
    """A ``--flag`` per scalar knob of ``model`` (``ESConfig`` or ``Thresholds``), named, typed
    and described by the field itself; its range is checked by the model (or the server's 400)."""
    from weights.config import scalar_type

    for name in reversed(list(names if names is not None else model.model_fields)):
        declared = model.model_fields[name]
        kind, choices = scalar_type(declared.annotation)
        if kind is None:  # a mapping (fitness_weights): set it in a YAML file
            continue
        flag = f"--{prefix}{name}".replace("_", "-")
        click_type = click.Choice(list(choices)) if choices else kind
        command = click.option(
            flag, prefix.replace("-", "_") + name, type=click_type, help=declared.description
        )(command)
    return command


def es_options(command):
    from weights.config import ESConfig

    return knob_options(command, ESConfig)


@main.command()
@click.option("--model", "model_dir", type=_PATH, required=True, help="Parent model directory.")
@click.option("--items", "items_path", type=_PATH, required=True, help="JSONL training items.")
@click.option("--out", "out_dir", type=_PATH, required=True, help="Output directory.")
@click.option("--preset", type=click.Choice(["paper", "cpu"]), default="paper", show_default=True)
@click.option("--config", "config_path", type=_PATH, help="YAML config (flags override it).")
@click.option("--base", "base_dir", type=_PATH, help="theta0 for AWD (default: --model).")
@click.option("--heldout", "heldout_path", type=_PATH, help="Verifiable JSONL items for the target score.")
@click.option("--eval-every", type=int, default=0, help="Score --heldout every N iterations.")
@es_options
@click.option("--resume", is_flag=True, help="Continue the run recorded in --out.")
@click.option("--eager", is_flag=True, help="Start the engine with --enforce-eager (faster start).")
@click.option(
    "--dtype",
    default="auto",
    envvar="PERENNIAL_ENGINE_DTYPE",
    show_default=True,
    help="The learner engine's vLLM --dtype (auto: bfloat16 on GPUs and on CPUs with native bf16, "
    "eager on a CPU; float32 on other CPUs). The master and the snapshot stay float32.",
)
@ray_options("")
def learn(
    model_dir,
    items_path,
    out_dir,
    config_path,
    preset,
    base_dir,
    heldout_path,
    eval_every,
    resume,
    eager,
    dtype,
    ray_address,
    ray_actors,
    **overrides,
) -> None:
    """ES + AWD on a JSONL item file; writes metrics.jsonl and a snapshot (see perennial/offline.py)."""
    import asyncio
    import logging

    from learner.items import ItemError
    from perennial.offline import learn as run_learn
    from weights.config import ConfigError, ESConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per engine request otherwise
    try:
        config = (
            ESConfig.from_yaml(config_path, **overrides)
            if config_path
            else ESConfig.preset(preset, **overrides)
        )
        meta = asyncio.run(
            run_learn(
                model_dir,
                items_path,
                out_dir,
                config,
                base_dir=base_dir,
                heldout_path=heldout_path,
                eval_every=eval_every,
                resume=resume,
                engine_args=["--enforce-eager"] if eager else None,
                dtype=dtype,
                ray=ray_address,
                ray_actors=ray_actors,
            )
        )
    except (ConfigError, ItemError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out_dir / 'snapshot'}  sha256={meta.sha256}")


from clients.cli import chat, feedback  # noqa: E402  (loads no SDK yet)
from clients.cli_admin import promote, rollback, rounds, rounds_trigger, suites, versions  # noqa: E402


def _round_flags() -> None:
    # The round's flags, derived from the knobs' one declaration (the clients package may not
    # import it: it passes them through, and the server answers a bad value with a 400).
    from evals.thresholds import Thresholds
    from weights.config import ROUND_KNOBS, ESConfig

    knob_options(rounds_trigger, ESConfig, ROUND_KNOBS)
    knob_options(rounds_trigger, Thresholds, prefix="gate-")


_round_flags()
for _command in (chat, feedback, versions, promote, rollback, rounds, suites):
    main.add_command(_command)


from perennial.simulate import simulate  # noqa: E402  (imports nothing heavy)

main.add_command(simulate)


if __name__ == "__main__":
    main()
