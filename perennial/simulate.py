"""``perennial simulate``: simulated users chat with a running Perennial and give feedback.

    perennial simulate --url http://127.0.0.1:8000 --api-key sk-... --task addition --count 200 --rate 4
    perennial simulate --task concise --feedback thumbs --count 50        # a hidden style preference
    perennial simulate --items my_task.jsonl --feedback both --json       # your own reference answers

Prints one summary line (or the full report with ``--json``); exits 1 if no chat succeeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("simulate")
@click.option(
    "--url",
    envvar="PERENNIAL_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The gateway (PERENNIAL_URL).",
)
@click.option("--api-key", envvar="PERENNIAL_API_KEY", help="A chat/feedback key (PERENNIAL_API_KEY).")
@click.option(
    "--task",
    "task_name",
    default="addition",
    show_default=True,
    help="addition, concise or enthusiastic (ignored with --items).",
)
@click.option(
    "--items",
    "items_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="JSONL items with prompt/messages, reference and verifier.",
)
@click.option("--count", type=click.IntRange(min=0), default=100, show_default=True, help="Chats in all.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Chats started per second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--feedback",
    type=click.Choice(["auto", "reference", "thumbs", "reward", "both", "none"]),
    default="auto",
    show_default=True,
    help="What users send back.",
)
@click.option(
    "--feedback-fraction",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Share of chats that get feedback.",
)
@click.option("--users", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", help="Model id (default: the first the server lists).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def simulate(task_name, items_path, as_json, **options) -> None:
    """Simulated users chat and give feedback according to a hidden preference or a verifier."""
    from clients.sim_tasks import TaskError, builtin_task, load_items
    from clients.simulator import SimulationConfig, SimulationError, run_simulation

    try:
        task = load_items(items_path) if items_path else builtin_task(task_name)
        report = run_simulation(task, SimulationConfig(**options))
    except (TaskError, SimulationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.summary())
        for error in report.errors:
            click.echo(f"  error: {error}", err=True)
    if report.chats == 0 and options["count"] > 0:
        raise SystemExit(1)
