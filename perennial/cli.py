"""The ``perennial`` command.

    perennial serve [--host H] [--port P] [--data-dir D]   # gateway + engine (+ learner)
    perennial model prepare [--data-dir D]                  # convert the bundled model once

Every option also has a ``PERENNIAL_*`` environment variable (see .env.example); flags win.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError


def _settings(**overrides):
    from server.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            click.echo(f"error: invalid setting PERENNIAL_{field.upper()}: {error['msg']}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Perennial: an online continual-learning server for LLMs."""


@main.command()
@click.option("--host", help="Interface to bind (PERENNIAL_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (PERENNIAL_PORT, default 8000; 0 = any free).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
@click.option("--model-dir", type=click.Path(path_type=Path), help="Serve this HF model directory.")
@click.option("--engine-url", help="Attach to a running vLLM server instead of starting one.")
def serve(host, port, data_dir, model_dir, engine_url) -> None:
    """Run the gateway and its serving engine (the embedded default needs no other setup)."""
    from server.main import serve as run

    run(_settings(host=host, port=port, data_dir=data_dir, model_dir=model_dir, engine_url=engine_url))


@main.group()
def model() -> None:
    """Model preparation."""


@model.command("prepare")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory (PERENNIAL_DATA_DIR).")
def model_prepare(data_dir) -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a safetensors directory (once)."""
    import logging

    from server.model_prep import ModelPrepError, read_record, resolve_model_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = _settings(data_dir=data_dir)
    try:
        path = resolve_model_dir(settings.model_dir, settings.models_dir)
    except ModelPrepError as exc:
        raise click.ClickException(str(exc)) from exc
    record = read_record(path) or {}
    click.echo(f"{path}  sha256={record.get('sha256', 'n/a')}")


if __name__ == "__main__":
    main()
