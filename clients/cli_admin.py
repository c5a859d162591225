"""The ``perennial`` admin commands (admin key): versions, promote, rollback, rounds, suites.

    perennial versions [VERSION] [--limit N]
    perennial versions rebuild VERSION      (a dropped snapshot, from its seed log, with progress)
    perennial promote VERSION [--force --reason TEXT]
    perennial rollback [--to VERSION] [--reason TEXT]
    perennial rounds list | show ROUND | trigger [--iterations K ...] [--wait] | wait ROUND
    perennial suites list [--model-version V] | add FILE [--name N] | remove NAME [--version V]
    perennial feedback list [--caller KEY_ID --since T --until T --disabled/--enabled]
    perennial feedback disable|enable|delete [ID...] [--caller KEY_ID --since T --until T --reason R]

Shared options, errors and exit codes: ``clients/cli.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from clients.cli import EXIT_API, ClientCommand, ClientGroup, admin_options, connect, emit, feedback
from clients.models import Round


@click.command(cls=ClientCommand)
@click.argument("args", nargs=-1, metavar="[VERSION | rebuild VERSION]")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True)
@admin_options
def versions(args, limit, url, timeout, as_json, admin_key) -> None:
    """List model versions with their gate decisions ('*' = serving), or show VERSION.

    ``versions rebuild VERSION`` rebuilds a version whose snapshot the retention policy dropped,
    replaying seed logs from its nearest stored ancestor (progress on stderr; exit 1 if the
    replay does not reproduce the recorded checksums).
    """
    from clients.render import version_detail, versions_table

    if args[:1] == ("rebuild",):
        if len(args) != 2:
            raise click.UsageError("usage: perennial versions rebuild VERSION")
        return _rebuild(args[1], url, timeout, as_json, admin_key)
    if len(args) > 1:
        raise click.UsageError("at most one VERSION (or: versions rebuild VERSION)")
    version = args[0] if args else None
    with connect(url, timeout, admin_key=admin_key) as client:
        if version:
            one = client.admin.version(version)
            emit(one, as_json, lambda: version_detail(one))
        else:
            listing = client.admin.versions(limit)
            emit(listing, as_json, lambda: versions_table(listing.data))


def _rebuild(version, url, timeout, as_json, admin_key) -> None:
    def show(job) -> None:
        p = job.progress or {}
        where = (
            f" {p['version']}: generation {p['generation']}/{p['generations']}, "
            f"iteration {p['iteration']}/{p['iterations']}"
            if p
            else ""
        )
        click.echo(f"rebuild {version}: {job.state}{where}", err=True)

    with connect(url, timeout, admin_key=admin_key) as client:
        job = client.admin.rebuild(version, on_progress=show)
    if job.state == "failed":
        click.echo(f"error: rebuild of {version} failed: {job.error}", err=True)
        sys.exit(EXIT_API)
    report = job.report or {}
    emit(
        job,
        as_json,
        lambda: (
            f"{version}: weights present, nothing to rebuild"
            if job.state == "present"
            else f"rebuilt {version} from {report.get('start')} ({len(report.get('generations', []))} "
            f"generation(s), {report.get('iterations')} iterations) in {report.get('seconds', 0):.1f} s; "
            f"sha256 {str(report.get('sha256'))[:12]} verified"
        ),
    )


def _swap_line(result) -> str:
    seconds = result.swap.get("pause_to_resume_s")
    pause = f"; engine paused {seconds:.2f} s" if isinstance(seconds, int | float) else ""
    return f"now serving {result.serving} (was {result.previous}){pause}"


@click.command(cls=ClientCommand)
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even if the gate did not approve it.")
@click.option("--reason", help="Why (required with --force; kept in the audit log).")
@admin_options
def promote(version, force, reason, url, timeout, as_json, admin_key) -> None:
    """Serve VERSION (hot swap); refused with 409 unless the gate approved it or --force."""
    if force and not (reason or "").strip():
        raise click.UsageError("--force needs --reason (it goes into the audit log)")
    with connect(url, timeout, admin_key=admin_key) as client:
        result = client.admin.promote(version, force=force, reason=reason)
    emit(result, as_json, lambda: _swap_line(result))


@click.command(cls=ClientCommand)
@click.option("--to", "to", help="A promoted version (default: the one served before).")
@click.option("--reason", help="Why (kept in the audit log).")
@admin_options
def rollback(to, reason, url, timeout, as_json, admin_key) -> None:
    """Serve an earlier promoted version again (hot swap)."""
    with connect(url, timeout, admin_key=admin_key) as client:
        result = client.admin.rollback(to=to, reason=reason)
    emit(result, as_json, lambda: _swap_line(result))


@click.group(cls=ClientGroup)
def rounds() -> None:
    """Learner rounds: list, show, trigger (and wait), wait."""


@rounds.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@admin_options
def rounds_list(limit, url, timeout, as_json, admin_key) -> None:
    """Rounds, newest first, with their decisions."""
    from clients.render import rounds_table

    with connect(url, timeout, admin_key=admin_key) as client:
        rounds = client.admin.rounds(limit)
    emit(rounds, as_json, lambda: rounds_table(rounds))


@rounds.command("show")
@click.argument("round_id", metavar="ROUND", type=int)
@admin_options
def rounds_show(round_id, url, timeout, as_json, admin_key) -> None:
    """One round: phase, gate decision and reasons, per-iteration metrics."""
    from clients.render import run_detail

    with connect(url, timeout, admin_key=admin_key) as client:
        run = client.admin.round(round_id)
    emit(run, as_json, lambda: run_detail(run))


class Progress:
    """Round progress on stderr: a tqdm bar on a terminal, else one line per change."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.tty = sys.stderr.isatty()

    def __call__(self, run: Round) -> None:
        from clients.render import progress_text

        if not self.tty:
            click.echo(progress_text(run), err=True)
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=run.iterations_total,
                desc=f"round {run.id} {run.phase}",
                bar_format="{l_bar}{bar}| iteration {n_fmt}/{total_fmt} [{elapsed}]",
                file=sys.stderr,
                leave=True,
            )
        if run.iterations_total and self.bar.total != run.iterations_total:
            self.bar.total = run.iterations_total
        self.bar.set_description(f"round {run.id} {run.phase}")
        self.bar.n = run.iterations_done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _wait(client, round_id: int, wait_timeout: float, poll: float, as_json: bool) -> None:
    """Wait for a round with progress; exit 1 if it failed."""
    from clients.render import run_detail

    progress = Progress()
    try:
        run = client.admin.wait_round(round_id, timeout=wait_timeout, poll_s=poll, on_progress=progress)
    finally:
        progress.close()
    emit(run, as_json, lambda: run_detail(run))
    if run.status == "failed":
        click.echo(f"error: round {run.id} failed: {run.error}", err=True)
        sys.exit(EXIT_API)


_wait_options = (
    click.option(
        "--wait-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=7200.0,
        show_default=True,
        help="Seconds to wait for the round (exit 4 after).",
    ),
    click.option(
        "--poll",
        type=click.FloatRange(min=0.1),
        default=2.0,
        show_default=True,
        help="Seconds between progress polls.",
    ),
)


def _with_wait_options(fn):
    for option in reversed(_wait_options):
        fn = option(fn)
    return fn


@rounds.command("trigger")
@click.option("--wait", is_flag=True, help="Wait for the round, with a progress bar.")
@_with_wait_options
@admin_options
def rounds_trigger(wait, wait_timeout, poll, url, timeout, as_json, admin_key, **overrides) -> None:
    """Queue a learner round now (409 while one is active); --wait follows it to the end.

    The ES and ``--gate-*`` flags are added by ``perennial.cli`` from the knobs' one declaration;
    their values pass through to the server, which answers an invalid one with a 400.
    """
    gate = {k.removeprefix("gate_"): overrides.pop(k) for k in list(overrides) if k.startswith("gate_")}
    with connect(url, timeout, admin_key=admin_key) as client:
        run = client.admin.trigger_round(gate=gate, **overrides)
        if not wait:
            emit(run, as_json, lambda: f"round {run.id} {run.status}")
            return
        click.echo(f"round {run.id} {run.status}", err=True)
        _wait(client, run.id, wait_timeout, poll, as_json)


@rounds.command("wait")
@click.argument("round_id", metavar="ROUND", type=int)
@_with_wait_options
@admin_options
def rounds_wait(round_id, wait_timeout, poll, url, timeout, as_json, admin_key) -> None:
    """Wait for a round to finish, with a progress bar; exit 1 if it failed."""
    with connect(url, timeout, admin_key=admin_key) as client:
        _wait(client, round_id, wait_timeout, poll, as_json)


@click.group(cls=ClientGroup)
def suites() -> None:
    """Prior-capability suites the gate scores: list, add, remove."""


@suites.command("list")
@click.option("--model-version", help="Also show this version's cached scores.")
@admin_options
def suites_list(model_version, url, timeout, as_json, admin_key) -> None:
    """Registered suites (disabled ones too)."""
    from clients.render import table

    with connect(url, timeout, admin_key=admin_key) as client:
        rows = client.admin.suites(model_version)
    headers = ["SUITE", "VERSION", "SKILL", "SOURCE", "ITEMS", "ENABLED"] + (
        ["SCORE"] if model_version else []
    )
    emit(
        rows,
        as_json,
        lambda: table(
            headers,
            [
                [s.name, s.version, s.skill, s.source, s.items, s.enabled]
                + ([s.score] if model_version else [])
                for s in rows
            ],
        ),
    )


@suites.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Default: the file's header name.")
@click.option("--version", type=click.IntRange(1), help="Default: the header's, else 1.")
@admin_options
def suites_add(path, name, version, url, timeout, as_json, admin_key) -> None:
    """Upload a suite (PATH: JSONL).

    \b
    Line 1 (optional): {"suite": {"name": ..., "version": 1, "skill": ...}}
    Then one item a line: {"id", "prompt" (or "messages"), "reference", "verifier"}
    """
    with connect(url, timeout, admin_key=admin_key) as client:
        suite = client.admin.add_suite(path, name=name, version=version)
    emit(suite, as_json, lambda: f"suite {suite.name} v{suite.version}: {suite.items} items, enabled")


@suites.command("remove")
@click.argument("name")
@click.option("--version", help="Only this version (default: every version).")
@admin_options
def suites_remove(name, version, url, timeout, as_json, admin_key) -> None:
    """Stop scoring a suite (disabled; its past scores are kept)."""
    with connect(url, timeout, admin_key=admin_key) as client:
        rows = client.admin.remove_suite(name, version=version)
    emit(rows, as_json, lambda: "disabled " + ", ".join(f"{s.name} v{s.version}" for s in rows))


# ``perennial feedback`` gives feedback (clients/cli.py); these are its admin subcommands.
_selection_options = (
    click.argument("ids", nargs=-1, metavar="[ID...]"),
    click.option("--caller", help="A caller's key id (key_...), as listed."),
    click.option("--since", help="Given at or after (ISO 8601 or UNIX seconds)."),
    click.option("--until", help="Given before (ISO 8601 or UNIX seconds)."),
    click.option("--reason", help="Why (kept in the audit log)."),
)


def _with_selection(fn):
    for option in reversed(_selection_options):
        fn = option(fn)
    return fn


@feedback.command("list")
@click.option("--caller", help="Only this caller's (a key id, key_...).")
@click.option("--since", help="Given at or after (ISO 8601 or UNIX seconds).")
@click.option("--until", help="Given before (ISO 8601 or UNIX seconds).")
@click.option("--disabled/--enabled", default=None, help="Only disabled, or only enabled, items.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--after", help="The last id of the previous page.")
@admin_options
def feedback_list(caller, since, until, disabled, limit, after, url, timeout, as_json, admin_key) -> None:
    """Stored feedback (admin key), newest first, with its caller and whether it is disabled."""
    from clients.render import table

    with connect(url, timeout, admin_key=admin_key) as client:
        page = client.admin.feedback(
            limit=limit, after=after, caller=caller, since=since, until=until, disabled=disabled
        )
    headers = ["FEEDBACK", "CALLER", "COMPLETION", "REWARD", "LABEL", "TASK", "CREATED", "DISABLED"]
    rows = [
        [f.id, f.caller, f.completion_id, f.reward, f.label, f.task, f.created]
        + [f"yes: {f.disabled_reason}" if f.disabled and f.disabled_reason else ("yes" if f.disabled else "")]
        for f in page.data
    ]
    more = f"\n(more: --after {page.last_id})" if page.has_more else ""
    emit(page, as_json, lambda: table(headers, rows) + more)


def _act(action: str, ids, caller, since, until, reason, url, timeout, as_json, admin_key) -> None:
    selection = {"ids": list(ids) or None, "caller": caller, "since": since, "until": until}
    if all(v is None for v in selection.values()):
        raise click.UsageError("name some feedback: ID..., --caller, --since or --until")
    with connect(url, timeout, admin_key=admin_key) as client:
        method = getattr(client.admin, f"{action}_feedback")
        done = method(reason=reason, **selection)
    emit(done, as_json, lambda: f"{action}d {done.count} feedback item(s)")


@feedback.command("disable")
@_with_selection
@admin_options
def feedback_disable(ids, caller, since, until, reason, url, timeout, as_json, admin_key) -> None:
    """Disable feedback (admin key): kept and listed, never used by the learner; audited.

    Selection: feedback IDs, --caller, --since, --until (combined with AND; at least one).
    """
    _act("disable", ids, caller, since, until, reason, url, timeout, as_json, admin_key)


@feedback.command("enable")
@_with_selection
@admin_options
def feedback_enable(ids, caller, since, until, reason, url, timeout, as_json, admin_key) -> None:
    """Enable disabled feedback again (admin key; the selection as for disable); audited."""
    _act("enable", ids, caller, since, until, reason, url, timeout, as_json, admin_key)


@feedback.command("delete")
@_with_selection
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@admin_options
def feedback_delete(ids, caller, since, until, reason, yes, url, timeout, as_json, admin_key) -> None:
    """Delete feedback for good (admin key; the selection as for disable); audited."""
    if not yes:
        click.confirm("Delete the selected feedback for good?", abort=True, err=True)
    _act("delete", ids, caller, since, until, reason, url, timeout, as_json, admin_key)
