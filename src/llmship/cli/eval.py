"""``llmship eval``: the quality gate, and the eval runs stored in the registry.

``llmship eval --dataset D --candidate R`` generates with the candidate and the
baseline (``production`` by default), compares them case by case and exits 0
(the gate passed), 1 (it failed) or 2 (it could not run: bad dataset, unknown
release, ...). ``eval list`` and ``eval show`` read stored runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmship.cli._common import (
    ReleaseOption,
    console,
    err_console,
    fail,
    handle_errors,
    open_registry,
    release_filter,
    settings,
)
from llmship.cli._help import App

if TYPE_CHECKING:
    from llmship.eval.report_model import EvalReport

app = App(
    help="Evaluate a candidate release against the baseline on a golden dataset (a gate).",
    invoke_without_command=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        help="Environment whose aliases to use (default: LLMSHIP_ENV or dev).",
    ),
]
DEFAULT_BASELINE = "production"
"""``llmship.eval.ops.DEFAULT_BASELINE`` (not imported: the eval package is loaded lazily)."""


class ListFormat(str, Enum):
    """Output formats of `eval list`."""

    table = "table"
    json = "json"


class ShowFormat(str, Enum):
    """Output formats of `eval show`."""

    table = "table"
    json = "json"
    markdown = "markdown"


@app.callback()
@handle_errors
def eval_(
    ctx: typer.Context,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset", "-d", help="Golden dataset: .jsonl, .csv or .yaml (see docs/eval.md)."
        ),
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option(
            "--candidate",
            "-c",
            metavar="REF",
            help="The release to judge: NAME@VERSION or an alias.",
        ),
    ] = None,
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            "-b",
            metavar="REF",
            help="What to compare with: an alias or NAME@VERSION (the candidate itself: A/A).",
        ),
    ] = DEFAULT_BASELINE,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            help="Requests at once to an openai backend (llamacpp generates one at a time).",
        ),
    ] = 4,
    env: EnvOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Generation seed of every request.")] = 0,
    temperature: Annotated[
        float, typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature.")
    ] = 0.0,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens", min=1, help="Most tokens per answer (default: each release's own)."
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="REF",
            help="Release that grades llm-rubric assertions (NAME@VERSION or an alias).",
        ),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Only the cases with this tag (repeatable)."),
    ] = None,
    bootstrap_seed: Annotated[
        int, typer.Option("--bootstrap-seed", help="Seed of the paired bootstrap.")
    ] = 12345,
    resamples: Annotated[
        int, typer.Option("--resamples", min=1, help="Paired bootstrap resamples.")
    ] = 1000,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Write JUnit XML (a test case per case and gate)."),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary (a PR comment).")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report with diffs.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the whole report as JSON.")
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Generate every output again (and refresh the cache)."),
    ] = False,
) -> None:
    """Judge a candidate release against the baseline on a golden dataset.

    Exit status: 0 the gate passed, 1 it failed, 2 it could not run.
    """
    if ctx.invoked_subcommand is not None:
        return
    if dataset is None or candidate is None:
        missing = " and ".join(
            f"--{name}"
            for name, value in (("dataset", dataset), ("candidate", candidate))
            if value is None
        )
        raise fail(
            f"give {missing}, e.g. llmship eval --dataset evals/smoke.jsonl "
            "--candidate NAME@VERSION (see llmship eval --help)"
        )
    from llmship.eval import ops
    from llmship.eval.config import load_gate
    from llmship.eval.runner import EvalOptions

    cfg = settings(env=env)
    gate = load_gate()
    data = ops.load_cases(dataset, tags or ())
    options = EvalOptions(
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        concurrency=concurrency,
        timeout_s=cfg.request_timeout,
        cache_read=not no_cache,
        bootstrap_seed=bootstrap_seed,
        resamples=resamples,
    )
    paths = ops.ReportPaths(json=json_path, junit=junit, markdown=markdown, html=html_path)
    with open_registry(cfg) as registry, _progress() as sink:
        result = ops.run_eval(
            registry,
            data,
            candidate,
            env=cfg.env,
            actor=cfg.actor,
            gate=gate,
            options=options,
            baseline=baseline,
            judge=judge,
            paths=paths,
            progress=sink,
            on_recorded=lambda report: _print_report(report, before=sink.close),
        )
    for label, path in result.written:
        console.print(f"{label} report: {escape(str(path))}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


class _RichProgress:
    """Generation progress as Rich bars on stderr: one per release, cases done of total.

    The bars appear when the first release starts generating, and are closed
    before the report is printed.
    """

    def __init__(self) -> None:
        columns = (
            TextColumn("generating {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.progress = Progress(*columns, console=err_console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.closed = False

    def start(self, label: str, total: int, done: int) -> None:
        if not self.tasks and not self.closed:
            self.progress.start()
        cached = f" ({done} cached)" if done else ""
        self.tasks[label] = self.progress.add_task(f"{label}{cached}", total=total, completed=done)

    def advance(self, label: str) -> None:
        self.progress.advance(self.tasks[label])

    def close(self) -> None:
        """Stop the bars, once (stopping prints a last line in a log)."""
        if self.tasks and not self.closed:
            self.progress.stop()
        self.closed = True


@contextmanager
def _progress() -> Iterator[_RichProgress]:
    sink = _RichProgress()
    try:
        yield sink
    finally:
        sink.close()


# -- printing ------------------------------------------------------------------------------

_COMPACT: dict[str, Any] = {
    "title_justify": "left",
    "box": box.SIMPLE_HEAD,
    "show_edge": False,
    "pad_edge": False,
    "collapse_padding": True,
}
"""Tables that fit 80 columns (CI logs)."""


def _metrics_table(report: EvalReport) -> Table:
    from llmship.eval.reports import fmt_ci, fmt_delta, fmt_metric, fmt_p

    table = Table(
        title=f"{report.candidate.ref} (candidate) vs {report.baseline.ref} "
        f"(baseline) on {report.dataset.path}, {report.dataset.cases} cases",
        **_COMPACT,
    )
    for column in ("metric", "baseline", "candidate", "delta", "95% CI", "p", "verdict"):
        justify: Literal["left", "right"] = "left" if column in ("metric", "verdict") else "right"
        table.add_column(column, justify=justify, no_wrap=column != "95% CI")
    for row in report.metrics:
        metric = row.metric
        verdict = "–"
        if row.gated:
            verdict = "[green]pass[/]" if row.passed else "[bold red]FAIL[/]"
        table.add_row(
            escape(metric),
            fmt_metric(metric, row.baseline),
            fmt_metric(metric, row.candidate),
            fmt_delta(metric, row.delta),
            fmt_ci(metric, row.ci_low, row.ci_high),
            fmt_p(row.p_value),
            verdict,
        )
    return table


def _print_report(report: EvalReport, *, before: Callable[[], None] | None = None) -> None:
    """Print the metrics table and the verdict (``before``: close what draws on the terminal)."""
    if before is not None:
        before()
    console.print(_metrics_table(report))
    gen = report.generation
    aa = ", A/A run" if report.aa else ""
    run = report.run if report.run is not None else "?"
    console.print(
        f"{gen.generated} generated, {gen.cached} cached{aa}; gate from "
        f"{escape(report.gate.source)}; run {run}",
        highlight=False,
    )
    if report.verdict.error is not None:
        console.print(f"[bold red]ERROR[/] {escape(report.candidate.ref)}: nothing was checked")
        return  # the error itself is the command's message (exit 2)
    if report.verdict.passed:
        console.print(f"[bold green]PASS[/] {escape(report.candidate.ref)} may go out")
        return
    console.print(f"[bold red]FAIL[/] {escape(report.candidate.ref)}:")
    for reason in report.verdict.failures:
        console.print(f"  - {escape(reason)}", highlight=False)


# -- stored runs ------------------------------------------------------------------------------


@app.command("list")
@handle_errors
def list_(
    release: ReleaseOption = None,
    output: Annotated[
        ListFormat, typer.Option("--format", "-f", help="table or json.")
    ] = ListFormat.table,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    env: EnvOption = None,
) -> None:
    """List stored eval runs, newest first."""
    from llmship.eval import ops

    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        chosen = release_filter(registry, release, cfg.env) if release else None
        runs = ops.list_runs(
            registry,
            ref=chosen.ref if chosen else None,
            name=chosen.name if chosen else None,
            limit=limit,
        )
    if output is ListFormat.json:
        rows = [
            {
                "id": r.id,
                "ref": r.ref,
                "baseline_ref": r.baseline_ref,
                "env": r.env,
                "passed": r.passed,
                "forced": r.forced,
                "summary": r.summary,
                "created_at": r.created_at.isoformat(),
                "created_by": r.created_by,
            }
            for r in (stored.run for stored in runs)
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not runs:
        of = f" of {chosen}" if chosen else ""
        typer.echo(f"no eval runs{of} yet: llmship eval --dataset PATH --candidate NAME@VERSION")
        return
    table = Table(title="eval runs", **_COMPACT)
    table.add_column("run", justify="right")
    table.add_column("candidate", no_wrap=True)
    table.add_column("baseline", no_wrap=True)
    table.add_column("dataset", overflow="ellipsis", max_width=24)
    table.add_column("cases", justify="right")
    table.add_column("pass rate", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("when (UTC)", no_wrap=True)
    for stored in runs:
        r, summary = stored.run, stored.summary
        rate = summary.metrics.get("pass_rate")
        rates = ""
        if rate is not None and rate.candidate is not None:
            was = f" (was {rate.baseline:.2f})" if rate.baseline is not None else ""
            rates = f"{rate.candidate:.2f}{was}"
        verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        if summary.error is not None:
            verdict = "[bold red]ERROR[/]"
        table.add_row(
            str(r.id),
            escape(r.ref),
            escape(r.baseline_ref or ""),
            escape(summary.dataset),
            str(summary.cases if summary.cases is not None else ""),
            rates,
            verdict,
            escape(f"{r.created_at:%m-%d %H:%M}"),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run id (see eval list).")],
    output: Annotated[
        ShowFormat, typer.Option("--format", "-f", help="table, json or markdown.")
    ] = ShowFormat.table,
) -> None:
    """Show a stored eval run: its metrics and verdict, or the whole report."""
    from llmship.eval import ops
    from llmship.eval.reports import eval_markdown

    cfg = settings()
    with open_registry(cfg) as registry:
        run = ops.get_run(registry, run_id)
    if output is ShowFormat.json:  # the stored JSON as it is, with the run id
        typer.echo(json.dumps({**run.report, "run": run.id}, indent=2, ensure_ascii=False))
    elif output is ShowFormat.markdown:
        typer.echo(eval_markdown(ops.read_report(run)), nl=False)
    else:
        _print_report(ops.read_report(run))
