"""The ``perennial`` client commands: chat and feedback here, admin commands in ``cli_admin.py``.

    perennial chat "What is the capital of France?" [--stream] [--json]
    perennial feedback chatcmpl-... --up | --reward 0.5 | --reference 42 --verifier number
    perennial feedback --batch items.jsonl          perennial feedback chatcmpl-... --show
    perennial versions [ID]    perennial promote ID [--force --reason R]    perennial rollback [--to ID]
    perennial rounds list|show ID|trigger [--wait]|wait ID
    perennial suites list|add FILE|remove NAME

The server comes from ``--url`` / ``PERENNIAL_URL`` (default http://127.0.0.1:8000), the API key
from ``--api-key`` / ``PERENNIAL_API_KEY``, the admin key from ``--admin-key`` /
``PERENNIAL_ADMIN_KEY``. Tables by default, ``--json`` for machines. Errors are one line on
stderr and an exit code (:data:`EXIT_CODES`). ``perennial/cli.py`` adds these commands (and
those of ``cli_admin.py``) to its group; everything here talks to the gateway over HTTP through
the SDK.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from clients.errors import PerennialAPIError, PerennialConnectionError, PerennialError, PerennialTimeoutError

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_CONNECT, EXIT_TIMEOUT = 0, 1, 2, 3, 4
EXIT_CODES = (
    "Exit codes: 0 ok; 1 the server answered an error (or a round failed); 2 usage error; "
    "3 cannot connect to the server; 4 timed out."
)
DEFAULT_URL = "http://127.0.0.1:8000"
F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: PerennialError) -> int:
    """The documented exit code for an SDK error."""
    if isinstance(exc, PerennialConnectionError):
        return EXIT_CONNECT
    if isinstance(exc, PerennialTimeoutError):
        return EXIT_TIMEOUT
    return EXIT_API


def error_line(exc: PerennialError) -> str:
    """``error 409 gate_not_passed: ...`` for API errors, ``error: ...`` for the others."""
    return str(exc) if isinstance(exc, PerennialAPIError) else f"error: {exc}"


class ClientCommand(click.Command):
    """A command whose SDK errors become one line on stderr and a documented exit code."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("epilog", EXIT_CODES)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PerennialError as exc:
            click.echo(error_line(exc), err=True)
            ctx.exit(exit_code(exc))
        except ValidationError as exc:  # the SDK checked an input (a --batch item, --metadata)
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "input"
            raise click.UsageError(f"invalid {where}: {first['msg']}", ctx) from exc


class ClientGroup(click.Group):
    command_class = ClientCommand


class DefaultGroup(ClientGroup):
    """A group whose arguments go to its ``default`` command unless the first names another one:
    ``perennial feedback chatcmpl-... --up`` gives feedback, ``perennial feedback list`` lists."""

    def __init__(self, *args: Any, default: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(fn: F) -> F:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


_common = (
    click.option(
        "--url",
        envvar="PERENNIAL_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The gateway (PERENNIAL_URL).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=120.0,
        show_default=True,
        help="Seconds per HTTP request.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables."),
)
api_options = _options(
    *_common,
    click.option("--api-key", envvar="PERENNIAL_API_KEY", help="API key (PERENNIAL_API_KEY)."),
)
admin_options = _options(
    *_common,
    click.option(
        "--admin-key", envvar="PERENNIAL_ADMIN_KEY", required=True, help="Admin key (PERENNIAL_ADMIN_KEY)."
    ),
)


def connect(url: str, timeout: float, *, api_key: str | None = None, admin_key: str | None = None):
    """An SDK client for a command (imported here: ``perennial serve`` never loads openai)."""
    from clients.sdk import Perennial
    from clients.transport import RetryPolicy

    return Perennial(
        url,
        api_key=api_key,
        admin_key=admin_key,
        timeout=timeout,
        retry=RetryPolicy(max_retries=2),
        chat_retries=1,
    )


def emit(value: Any, as_json: bool, human: Callable[[], str]) -> None:
    from clients.render import as_json as to_json

    click.echo(to_json(value) if as_json else human())


@click.command(cls=ClientCommand)
@click.argument("prompt", nargs=-1, required=True)
@click.option("--system", help="A system message first.")
@click.option("--model", help="Model id (default: the one the server serves).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature (0 = greedy).")
@click.option("--stream", is_flag=True, help="Print the reply as it is generated.")
@api_options
def chat(prompt, system, model, max_tokens, temperature, stream, url, timeout, as_json, api_key) -> None:
    """Ask the served model; prints the reply, then its completion id and model version (stderr).

    PROMPT is the user message ('-' reads it from stdin). Give the id to `perennial feedback`.
    """
    text = sys.stdin.read() if prompt == ("-",) else " ".join(prompt)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    params: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        params["temperature"] = temperature
    with connect(url, timeout, api_key=api_key) as client:
        if stream and not as_json:
            with client.chat_stream(messages, model=model, **params) as reply:
                for delta in reply:
                    click.echo(delta, nl=False)
                click.echo()
        else:
            reply = client.chat(messages, model=model, **params)
            if not as_json:
                click.echo(reply.text)
    usage = reply.usage.model_dump() if reply.usage else None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": reply.id,
                    "version": reply.version,
                    "text": reply.text,
                    "finish_reason": reply.finish_reason,
                    "usage": usage,
                },
                indent=2,
            )
        )
        return
    tokens = f"  tokens {usage['prompt_tokens']}+{usage['completion_tokens']}" if usage else ""
    click.echo(f"completion {reply.id}  version {reply.version}{tokens}", err=True)


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"line {number}: not JSON ({exc.msg})", param_hint="--batch") from exc
    if not items:
        raise click.BadParameter("no items", param_hint="--batch")
    return items


def _json_object(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint=name) from exc


def _verifier(value: str | None) -> str | dict | None:
    """A verifier name (``number``) or a JSON spec (``{"type": "regex", ...}``)."""
    if value is not None and value.lstrip().startswith("{"):
        return _json_object(value, "--verifier")
    return value


@click.group(cls=DefaultGroup, default="give")
def feedback() -> None:
    """Give feedback on a completion; with the admin key, list, disable, enable or delete it.

    \b
    perennial feedback chatcmpl-... --up          (perennial feedback give --help: every option)
    perennial feedback --batch items.jsonl
    perennial feedback list [--caller KEY_ID] [--disabled] ...
    perennial feedback disable|enable|delete [ID...] [--caller KEY_ID] [--since T] [--until T]
    """


@feedback.command("give")
@click.argument("completion_id", required=False)
@click.option("--up", "label", flag_value="up", help="Thumbs up (reward +1).")
@click.option("--down", "label", flag_value="down", help="Thumbs down (reward -1).")
@click.option("--reward", type=click.FloatRange(-1, 1), help="A reward in [-1, 1].")
@click.option("--correction", help="The reply you wanted.")
@click.option("--reference", help="The right answer, scored by --verifier.")
@click.option("--verifier", help="exact, contains, number, regex, json_schema, or a JSON spec.")
@click.option("--task", help="A tag the learner and admin views group by.")
@click.option("--metadata", help="A JSON object, stored as is.")
@click.option("--choice-index", type=click.IntRange(min=0), default=0, help="Choice of an n>1 completion.")
@click.option("--idempotency-key", help="Default: a fresh one; the same key + body stores once.")
@click.option("--batch", "batch_path", help="JSONL file of items ('-' = stdin), all or nothing.")
@click.option("--show", is_flag=True, help="List the feedback stored on COMPLETION_ID instead.")
@api_options
def feedback_give(
    completion_id, batch_path, show, idempotency_key, url, timeout, as_json, api_key, **signals
) -> None:
    """Rate, correct or give the right answer for a completion (or --batch a JSONL file).

    \b
    perennial feedback chatcmpl-... --up
    perennial feedback chatcmpl-... --reference 42 --verifier number --task addition
    perennial feedback --batch items.jsonl     (one {"completion_id": ..., ...} per line)
    perennial feedback chatcmpl-... --show
    """
    if (completion_id is None) == (batch_path is None):
        raise click.UsageError("give a COMPLETION_ID or --batch FILE (not both)")
    given = {k: v for k, v in signals.items() if v is not None and k != "choice_index"}
    if show and (given or batch_path):
        raise click.UsageError("--show lists feedback; it takes only COMPLETION_ID")
    with connect(url, timeout, api_key=api_key) as client:
        if show:
            stored = client.feedback_for(completion_id)
            emit(stored, as_json, lambda: _feedback_table(stored))
        elif batch_path:
            batch = client.feedback_batch(_read_jsonl(batch_path), idempotency_key=idempotency_key)
            replayed = " (replayed)" if batch.replayed else ""
            ids = " ".join(f.id for f in batch.data)
            emit(batch, as_json, lambda: f"stored {len(batch.data)} feedback item(s){replayed}: {ids}")
        else:
            signals["metadata"] = _json_object(signals["metadata"], "--metadata")
            signals["verifier"] = _verifier(signals["verifier"])
            item = client.feedback(completion_id, idempotency_key=idempotency_key, **signals)
            replayed = "  (replayed: stored before)" if item.replayed else ""
            emit(item, as_json, lambda: f"{item.id} on {item.completion_id}{replayed}")


def _feedback_table(stored) -> str:
    from clients.render import table

    rows = [[f.id, f.reward, f.label, f.task, f.reference, f.correction, f.created] for f in stored]
    return table(["FEEDBACK", "REWARD", "LABEL", "TASK", "REFERENCE", "CORRECTION", "CREATED"], rows)
