"""``llmship eval``: the quality gate, and the eval runs stored in the registry.

``llmship eval --dataset D --candidate R`` generates with the candidate and the
baseline (``production`` by default), compares them case by case and exits 0
(the gate passed), 1 (it failed) or 2 (it could not run: bad dataset, unknown
release, ...). ``eval list`` and ``eval show`` read stored runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmship.cli._common import (
    ReleaseFilter,
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
    from llmship.eval.cache import OutputCache
    from llmship.eval.config import load_gate
    from llmship.eval.dataset import load_dataset
    from llmship.eval.reports import (
        eval_html,
        eval_junit_suites,
        eval_markdown,
        write_json,
        write_junit,
        write_text,
    )
    from llmship.eval.runner import EvalOptions, run_eval

    cfg = settings(env=env)
    gate = load_gate()
    data = load_dataset(dataset)
    if tags:
        data = data.with_tags(*tags)
        if not data.cases:
            raise fail(f"{dataset}: no case has the tag(s) {', '.join(tags)}")
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
    with open_registry(cfg) as registry:
        cand = registry.resolve(candidate, env=cfg.env)
        base = _resolve_baseline(registry, baseline, cfg.env)
        judge_record = registry.resolve(judge, env=cfg.env) if judge else None
        source = base.ref if baseline == base.ref else f"{baseline} in {cfg.env}"
        cache = OutputCache(registry, read=options.cache_read)
        with _progress() as sink:
            outcome = run_eval(
                data,
                cand,
                base,
                gate,
                cache,
                options=options,
                env=cfg.env,
                baseline_source=source,
                judge=judge_record,
                progress=sink,
            )
        run = registry.record_gate_run(
            "eval",
            cand.ref,
            env=cfg.env,
            passed=outcome.passed,
            summary=outcome.summary,
            report=outcome.report,
            actor=cfg.actor,
            baseline_ref=base.ref,
        )
    report = {**outcome.report, "run": run.id}
    _print_report(report)
    try:
        if json_path is not None:
            write_json(json_path, report)
        if junit is not None:
            write_junit(junit, eval_junit_suites(report), name="llmship eval")
        if markdown is not None:
            write_text(markdown, eval_markdown(report))
        if html_path is not None:
            write_text(html_path, eval_html(report))
    except OSError as exc:
        raise fail(f"cannot write the report: {exc}") from None
    for label, path in (
        ("JSON", json_path),
        ("JUnit", junit),
        ("Markdown", markdown),
        ("HTML", html_path),
    ):
        if path is not None:
            console.print(f"{label} report: {escape(str(path))}", highlight=False)
    if not outcome.passed:
        raise typer.Exit(1)


def _resolve_baseline(registry: Any, baseline: str, env: str) -> Any:
    from llmship.errors import NotFoundError

    try:
        return registry.resolve(baseline, env=env)
    except NotFoundError as exc:
        if baseline != DEFAULT_BASELINE:
            raise
        raise NotFoundError(
            f"no baseline: {exc.message}. Set the production alias "
            f"(`llmship alias set production NAME@VERSION`) or give --baseline; "
            "--baseline the candidate itself only checks the minimums"
        ) from None


class _RichProgress:
    """Generation progress as Rich bars: one per release, cases done of total."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, label: str, total: int, done: int) -> None:
        cached = f" ({done} cached)" if done else ""
        self.tasks[label] = self.progress.add_task(f"{label}{cached}", total=total, completed=done)

    def advance(self, label: str) -> None:
        self.progress.advance(self.tasks[label])


@contextmanager
def _progress() -> Iterator[_RichProgress]:
    columns = (
        TextColumn("generating {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        yield _RichProgress(progress)


# -- printing ------------------------------------------------------------------------------

_COMPACT: dict[str, Any] = {
    "title_justify": "left",
    "box": box.SIMPLE_HEAD,
    "show_edge": False,
    "pad_edge": False,
    "collapse_padding": True,
}
"""Tables that fit 80 columns (CI logs)."""


def _metrics_table(report: Mapping[str, Any]) -> Table:
    from llmship.eval.reports import fmt_ci, fmt_delta, fmt_metric, fmt_p

    table = Table(
        title=f"{report['candidate']['ref']} (candidate) vs {report['baseline']['ref']} "
        f"(baseline) on {report['dataset']['path']}, {report['dataset']['cases']} cases",
        **_COMPACT,
    )
    for column in ("metric", "baseline", "candidate", "delta", "95% CI", "p", "verdict"):
        justify: Literal["left", "right"] = "left" if column in ("metric", "verdict") else "right"
        table.add_column(column, justify=justify, no_wrap=column != "95% CI")
    for row in report["metrics"]:
        metric = row["metric"]
        verdict = "–"
        if row.get("gated"):
            verdict = "[green]pass[/]" if row.get("passed") else "[bold red]FAIL[/]"
        table.add_row(
            escape(metric),
            fmt_metric(metric, row["baseline"]),
            fmt_metric(metric, row["candidate"]),
            fmt_delta(metric, row["delta"]),
            fmt_ci(metric, row["ci_low"], row["ci_high"]),
            fmt_p(row["p_value"]),
            verdict,
        )
    return table


def _print_report(report: Mapping[str, Any]) -> None:
    console.print(_metrics_table(report))
    releases = report["generation"]["releases"]
    generated = sum(r["generated"] for r in releases.values())
    cached = sum(r["cached"] for r in releases.values())
    aa = ", A/A run" if report.get("aa") else ""
    console.print(
        f"{generated} generated, {cached} cached{aa}; gate from {escape(report['gate']['source'])}"
        f"; run {report.get('run', '?')}",
        highlight=False,
    )
    failures = report["verdict"]["failures"]
    if report["verdict"]["passed"]:
        console.print(f"[bold green]PASS[/] {escape(report['candidate']['ref'])} may go out")
        if not any(row.get("gated") for row in report["metrics"]):
            console.print("no metric is gated: configure gates: eval: in llmship.yaml")
        return
    console.print(f"[bold red]FAIL[/] {escape(report['candidate']['ref'])}:")
    for reason in failures:
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
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        chosen = release_filter(registry, release, cfg.env) if release else None
        refs = _refs(registry, chosen)
        runs = sorted(
            (
                run
                for ref in refs
                for run in registry.list_gate_runs(
                    kind="eval", ref=ref, limit=limit, with_reports=False
                )
            ),
            key=lambda run: run.id,
            reverse=True,
        )[:limit]
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
            for r in runs
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
    for r in runs:
        rate = (r.summary.get("metrics") or {}).get("pass_rate") or {}
        rates = ""
        if rate.get("candidate") is not None:
            base = rate.get("baseline")
            rates = f"{rate['candidate']:.2f}" + (f" (was {base:.2f})" if base is not None else "")
        verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(
            str(r.id),
            escape(r.ref),
            escape(r.baseline_ref or ""),
            escape(str(r.summary.get("dataset", ""))),
            str(r.summary.get("cases", "")),
            rates,
            verdict,
            escape(f"{r.created_at:%m-%d %H:%M}"),
        )
    console.print(table)


def _refs(registry: Any, chosen: ReleaseFilter | None) -> list[str | None]:
    """The releases whose runs to read: every one (None), one, or each version of a name."""
    if chosen is None:
        return [None]
    if chosen.ref is not None:
        return [chosen.ref]
    return [r.ref for r in registry.list_releases(chosen.name)]


@app.command("show")
@handle_errors
def show(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run id (see eval list).")],
    output: Annotated[
        ShowFormat, typer.Option("--format", "-f", help="table, json or markdown.")
    ] = ShowFormat.table,
) -> None:
    """Show a stored eval run: its metrics and verdict, or the whole report."""
    from llmship.eval.reports import eval_markdown

    cfg = settings()
    with open_registry(cfg) as registry:
        run = registry.get_gate_run(run_id)
    if run.kind != "eval":
        raise fail(f"run {run_id} is a {run.kind} run, not an eval run")
    report = {**run.report, "run": run.id}
    if output is ShowFormat.json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif output is ShowFormat.markdown:
        typer.echo(eval_markdown(report), nl=False)
    else:
        _print_report(report)
