"""``llmship pipeline``: the whole change flow of a candidate, stage by stage.

``run`` calls :func:`llmship.pipeline.run.run_pipeline` and draws its progress: a
live Rich table of the stages on a terminal, one plain line per event otherwise
(a pipe, a log, or CI, where ``CI`` is set). ``list`` and ``show`` read the runs
recorded in the registry. Exit status of ``run``: 0 promoted (or waiting, on an
approval or after ``--until``), 1 a stage failed (named), 2 bad input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from llmship.cli._common import (
    Format,
    FormatOption,
    console,
    err_console,
    fail,
    handle_errors,
    open_registry,
    settings,
)
from llmship.cli._help import App

if TYPE_CHECKING:
    from llmship.pipeline.model import PipelineResult, StageEvent
    from llmship.registry import PipelineRun

app = App(
    help="The change flow: tests, eval and load-test gates, release, staging, approval, "
    "production rollout; list and show the runs.",
    no_args_is_help=True,
)


STATE_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "passed": "green",
    "skipped": "dim",
    "waiting": "yellow",
    "failed": "red",
    "succeeded": "green",
    "error": "red",
}


@app.command("run")
@handle_errors
def run_command(
    candidate: Annotated[
        str | None,
        typer.Option("--candidate", metavar="SPEC", help="The candidate's release spec file."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="ENV", help="Target environment (default: the last one declared)."
        ),
    ] = None,
    traffic: Annotated[
        bool,
        typer.Option(
            "--traffic",
            help="Send live requests through the target's gateway while its rollout runs.",
        ),
    ] = False,
    rps: Annotated[
        float,
        typer.Option("--rps", metavar="N", min=0.1, help="Requests per second of --traffic."),
    ] = 2.0,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", metavar="STAGE", help="Stop after this stage (the run waits; --resume it)."
        ),
    ] = None,
    resume: Annotated[
        int | None,
        typer.Option("--resume", metavar="RUN", help="Continue the waiting run RUN."),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Approve the promotion into the target now, where it allows --yes."
        ),
    ] = False,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", metavar="DIR", help="Folder of the reports (default: .llmship/pipelines/RUN)."
        ),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option("--dataset", metavar="PATH", help="Golden dataset of the eval gate."),
    ] = "evals/golden.jsonl",
    tests: Annotated[
        str,
        typer.Option(
            "--tests",
            metavar="PATH",
            help="The project's regression tests: a folder, a file or FILE::TEST.",
        ),
    ] = "tests",
    loadtest_duration: Annotated[
        str,
        typer.Option(
            "--loadtest-duration", metavar="DURATION", help="Measured time of the load-test gate."
        ),
    ] = "10s",
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", metavar="N", min=1, help="Longest answer in the gates."),
    ] = None,
    serve_timeout: Annotated[
        str,
        typer.Option(
            "--serve-timeout",
            metavar="DURATION",
            help="Longest wait for a gateway to answer with the release.",
        ),
    ] = "3m",
    rollout_timeout: Annotated[
        str,
        typer.Option(
            "--rollout-timeout",
            metavar="DURATION",
            help="Longest wait for the production rollout to end.",
        ),
    ] = "15m",
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            "-r",
            metavar="TEXT",
            help="Why (recorded with the promotions; default: 'pipeline run RUN').",
        ),
    ] = None,
) -> None:
    """Run the change flow of a candidate release spec, stage by stage.

    Exit status: 0 promoted (or waiting on an approval / --until), 1 a stage
    failed, 2 bad input (nothing recorded).
    """
    from llmship.environments import load_environments
    from llmship.loadtest.plan import parse_duration
    from llmship.pipeline.model import PipelineOptions
    from llmship.pipeline.run import run_pipeline

    seconds: dict[str, float] = {}
    for name, text in (
        ("loadtest-duration", loadtest_duration),
        ("serve-timeout", serve_timeout),
        ("rollout-timeout", rollout_timeout),
    ):
        try:
            seconds[name] = parse_duration(text)
        except ValueError as exc:
            raise fail(f"--{name}: {exc}") from None
    if candidate is None and resume is None:
        raise fail("give --candidate SPEC (a release spec file), or --resume RUN")
    options = PipelineOptions(
        candidate=candidate,
        to=to,
        traffic=traffic,
        traffic_rps=rps,
        until=until,
        resume=resume,
        yes=yes,
        out=out,
        dataset=dataset,
        tests=tests,
        loadtest_duration=seconds["loadtest-duration"],
        max_tokens=max_tokens,
        serve_timeout=seconds["serve-timeout"],
        rollout_timeout=seconds["rollout-timeout"],
        reason=reason or "",
    )
    cfg = settings()
    envs = load_environments()
    display = _display()
    with open_registry(cfg) as registry:
        try:
            result = run_pipeline(registry, envs, options, progress=display, settings=cfg)
        finally:
            display.close()
    _print_result(result)
    raise typer.Exit(result.exit_code)


@app.command("list")
@handle_errors
def list_command(
    state: Annotated[
        str | None,
        typer.Option(
            "--state", metavar="STATE", help="Only runs in this state (running, waiting, ...)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 20,
    fmt: FormatOption = Format.table,
) -> None:
    """The latest pipeline runs, newest first."""
    from llmship.registry._pipeline_runs import RUN_STATES

    if state is not None and state not in RUN_STATES:
        raise fail(f"--state {state}: use one of {', '.join(RUN_STATES)}")
    with open_registry(settings()) as registry:
        runs = registry.list_pipeline_runs(state=state, limit=limit)
    if fmt is Format.json:
        typer.echo(json.dumps([_run_json(r) for r in runs], indent=2))
        return
    if not runs:
        typer.echo("no pipeline runs yet: llmship pipeline run --candidate SPEC")
        return
    table = Table(title="pipeline runs", title_justify="left")
    for column in ("run", "release", "into", "state", "stage", "time", "started", "by"):
        table.add_column(column)
    for r in runs:
        current = next((s.name for s in r.stages if s.state not in ("passed", "skipped")), "")
        table.add_row(
            str(r.id),
            escape(r.ref or r.candidate),
            r.target_env,
            f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]",
            r.failed_stage or current,
            f"{sum(s.seconds or 0 for s in r.stages):.0f}s",
            r.created_at.isoformat(timespec="seconds"),
            escape(r.created_by),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_command(
    run: Annotated[int, typer.Argument(metavar="RUN", help="The pipeline run's id.")],
    fmt: FormatOption = Format.table,
) -> None:
    """One pipeline run: its stages, their times and what they found."""
    with open_registry(settings()) as registry:
        record = registry.get_pipeline_run(run)
    if fmt is Format.json:
        typer.echo(json.dumps(_run_json(record), indent=2))
        return
    from llmship.pipeline.report import stage_summary

    console.print(
        f"pipeline run {record.id}: {escape(record.ref or record.candidate)} into "
        f"{record.target_env}, [{STATE_STYLE.get(record.state, '')}]{record.state}[/]"
        + (f" at {record.failed_stage}" if record.failed_stage else ""),
        highlight=False,
    )
    console.print(_stage_table(record, stage_summary))
    if record.report_dir:
        console.print(f"reports: {escape(record.report_dir)}", highlight=False)


# -- progress ---------------------------------------------------------------------------


class _Lines:
    """One plain line per event (not a terminal, or CI)."""

    def __call__(self, event: StageEvent) -> None:
        if event.kind == "started":
            text = f"[{event.run}] {event.stage}: started"
        elif event.kind == "note":
            text = f"[{event.run}] {event.stage}: {event.message}"
        else:
            took = f" ({event.seconds:.1f}s)" if event.seconds is not None else ""
            why = f": {event.message}" if event.message else ""
            text = f"[{event.run}] {event.stage}: {event.state}{took}{why}"
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _LiveTable:
    """A Rich table of the stages, redrawn as events come (on a terminal)."""

    def __init__(self) -> None:
        from llmship.pipeline.model import STAGES

        self.rows: dict[str, list[Any]] = {s: ["pending", None, "", None] for s in STAGES}
        self.run: int | None = None
        self.live = Live(self._table(), console=err_console, refresh_per_second=4)
        self.started = False

    def __call__(self, event: StageEvent) -> None:
        if not self.started:
            self.live.start()
            self.started = True
        self.run = event.run
        row = self.rows.setdefault(event.stage, ["pending", None, "", None])
        if event.kind == "started":
            row[0], row[3] = "running", time.monotonic()
        elif event.kind == "note":
            row[2] = event.message
        else:
            row[0], row[1] = event.state or "", event.seconds
            row[2] = event.message or row[2]
        self.live.update(self._table())

    def _table(self) -> Table:
        title = f"pipeline run {self.run}" if self.run else "pipeline"
        table = Table(title=title, title_justify="left")
        for column in ("stage", "state", "time", ""):
            table.add_column(column)
        for name, (state, seconds, note, since) in self.rows.items():
            running = seconds is None and since is not None and state == "running"
            took_s = time.monotonic() - since if running else seconds
            took = f"{took_s:.0f}s" if took_s is not None else ""
            style = STATE_STYLE.get(state, "")
            table.add_row(name, f"[{style}]{state}[/]", took, escape(note[:90]))
        return table

    def close(self) -> None:
        if self.started:
            self.live.stop()


def _display() -> _Lines | _LiveTable:
    """Rich on a terminal, plain lines in a pipe or in CI (``CI`` set)."""
    if os.environ.get("CI") or not err_console.is_terminal:
        return _Lines()
    return _LiveTable()


# -- printing -------------------------------------------------------------------------------


def _print_result(result: PipelineResult) -> None:
    run = result.run
    style = STATE_STYLE.get(run.state, "")
    if run.state == "failed":
        err_console.print(
            f"[bold red]pipeline run {run.id} failed at {run.failed_stage}:[/] "
            f"{escape(result.message)}",
            highlight=False,
        )
    else:
        console.print(
            f"[{style}]pipeline run {run.id} {run.state}:[/] {escape(result.message)}",
            highlight=False,
        )
    for command in result.next_commands:
        console.print(f"  next: {escape(command)}", highlight=False)
    for label, path in (("Markdown", result.report_markdown), ("HTML", result.report_html)):
        if path is not None:
            console.print(f"{label} report: {escape(str(path))}", highlight=False)


def _stage_table(record: PipelineRun, summary: Any) -> Table:
    table = Table(title_justify="left")
    for column in ("stage", "state", "time", "detail"):
        table.add_column(column)
    for s in record.stages:
        took = f"{s.seconds:.1f}s" if s.seconds is not None else ""
        style = STATE_STYLE.get(s.state, "")
        table.add_row(s.name, f"[{style}]{s.state}[/]", took, escape(summary(s.name, s.detail)))
    return table


def _run_json(run: PipelineRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "candidate": run.candidate,
        "ref": run.ref,
        "target_env": run.target_env,
        "state": run.state,
        "failed_stage": run.failed_stage,
        "stages": [{**s.to_json(), "seconds": s.seconds} for s in run.stages],
        "report_dir": run.report_dir,
        "created_at": run.created_at.isoformat(),
        "created_by": run.created_by,
        "updated_at": run.updated_at.isoformat(),
    }
