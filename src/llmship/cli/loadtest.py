"""``llmship loadtest``: a Locust load test of an LLM service against SLOs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from llmship.cli._common import console, err_console, fail, handle_errors, settings
from llmship.loadtest import ops
from llmship.loadtest.ops import Measured, Measuring, ReportFiles, ServingRelease, SeveralReleases
from llmship.loadtest.plan import ENDPOINTS, LoadPlan, load_prompts, parse_duration
from llmship.settings import Settings

EXIT_GATE_FAILED = 1


def register(app: typer.Typer) -> None:
    """Add ``loadtest`` to the root command."""

    @app.command("loadtest")
    @handle_errors
    def loadtest(
        target: str | None = typer.Option(
            None,
            "--target",
            metavar="URL",
            help="Base URL of an OpenAI-compatible service (or its /predict).",
        ),
        release: str | None = typer.Option(
            None,
            "--release",
            metavar="REF",
            help="Serve NAME@VERSION (or an alias) on a free port with `llmship serve`; test it.",
        ),
        ref: str | None = typer.Option(
            None,
            "--ref",
            metavar="REF",
            help="With --target: the release (NAME@VERSION or an alias) the results are "
            "recorded against; nothing is served (--release serves one).",
        ),
        endpoint: str = typer.Option(
            "chat", "--endpoint", help=f"What to call: {', '.join(ENDPOINTS)}."
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            metavar="NAME",
            help="The `model` of requests (default: the first of /v1/models).",
        ),
        users: int | None = typer.Option(
            None, "--users", help="Closed loop: concurrent users (default 1)."
        ),
        spawn_rate: float | None = typer.Option(
            None,
            "--spawn-rate",
            help="Closed loop: users started per second (default: all at once).",
        ),
        rate: float | None = typer.Option(
            None, "--rate", help="Open loop: requests per second, however slow the answers."
        ),
        arrival: str = typer.Option(
            "constant", "--arrival", help="Open loop: constant or poisson inter-arrival times."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the poisson arrivals."),
        max_in_flight: int = typer.Option(
            256, "--max-in-flight", help="Open loop: most requests at once; more are dropped."
        ),
        duration: str = typer.Option(
            "30s", "--duration", metavar="DURATION", help="Measured time: 30s, 2m, 90."
        ),
        warmup: str = typer.Option(
            "0s", "--warmup", metavar="DURATION", help="Load before measuring (not counted)."
        ),
        prompts: Path | None = typer.Option(
            None,
            "--prompts",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="JSONL (prompt/input/messages) or text file, one prompt per line.",
        ),
        max_tokens: int = typer.Option(100, "--max-tokens", help="Most tokens per answer."),
        timeout: str = typer.Option(
            "60s",
            "--timeout",
            metavar="DURATION",
            help="Longest wait to connect or for the next bytes of an answer.",
        ),
        slo: list[str] | None = typer.Option(
            None,
            "--slo",
            metavar="KEY=VALUE",
            help="KEY=VALUE gate, repeatable: ttft_p95=0.5, error_rate=0.01, throughput_min=2 ...",
        ),
        env: str | None = typer.Option(
            None,
            "--env",
            "-e",
            metavar="ENV",
            help="Environment of aliases and the recorded run (default: LLMSHIP_ENV or dev).",
        ),
        json_path: Path | None = typer.Option(
            None, "--json", metavar="FILE", help="Write the JSON report here."
        ),
        markdown_path: Path | None = typer.Option(
            None,
            "--markdown",
            metavar="FILE",
            help="Write a Markdown summary (for a pull request) here.",
        ),
        html_path: Path | None = typer.Option(
            None,
            "--html",
            metavar="FILE",
            help="Write a self-contained HTML report with plots here.",
        ),
        junit_path: Path | None = typer.Option(
            None, "--junit", metavar="FILE", help="Write JUnit XML (one testcase per SLO) here."
        ),
        record: bool = typer.Option(
            True,
            "--record/--no-record",
            help="Store the run in the registry when the release is known.",
        ),
    ) -> None:
        """Load-test an LLM service with Locust and judge it against SLOs.

        Streams every answer and measures TTFT, TPOT, ITL, end-to-end latency,
        output tokens/s, errors and goodput. Exit code 0: every SLO held; 1: an
        SLO failed (or no request succeeded); 2: usage or runtime error.
        """
        from llmship.loadtest.config import load_gate_config, merged_slos
        from llmship.loadtest.slo import parse_slos

        if bool(target) == bool(release):
            raise fail("give --target URL or --release NAME@VERSION (exactly one)")
        if release and ref:
            raise fail(
                "--ref goes with --target (the release a service you run belongs to); "
                "--release serves and names the release already"
            )
        if rate is not None and (users is not None or spawn_rate is not None):
            raise fail("--rate (open loop) excludes --users and --spawn-rate (closed loop)")
        if rate is None and arrival != "constant":
            raise fail("--arrival applies to the open loop: give --rate too")
        slos = merged_slos(load_gate_config(), parse_slos(slo or []))
        seconds: dict[str, float] = {}
        for name, text in (("duration", duration), ("warmup", warmup), ("timeout", timeout)):
            try:
                seconds[name] = parse_duration(text)
            except ValueError as exc:
                raise fail(f"--{name}: {exc}") from None
        plan = LoadPlan(
            target=target or "http://127.0.0.1",
            endpoint=endpoint,  # type: ignore[arg-type]  # validated() checks it
            users=1 if users is None else users,
            spawn_rate=spawn_rate,
            rate=rate,
            arrival=arrival,  # type: ignore[arg-type]
            seed=seed,
            duration=seconds["duration"],
            warmup=seconds["warmup"],
            max_tokens=max_tokens,
            model=model,
            max_in_flight=max_in_flight,
            timeout=seconds["timeout"],
        )
        if prompts is not None:
            plan = replace(plan, prompts=load_prompts(prompts))
        plan = plan.validated()
        cfg = settings(env=env)
        _run(
            plan,
            slos,
            cfg,
            release=release,
            ref=ref,
            files=ReportFiles(json_path, markdown_path, html_path, junit_path),
            record=record,
        )


def _run(
    plan: LoadPlan,
    slos: dict[str, float],
    cfg: Settings,
    *,
    release: str | None,
    ref: str | None,
    files: ReportFiles,
    record: bool,
) -> None:
    """Run the test with a progress bar, print the report, then record it (after
    printing, so that a run that cannot be recorded still shows its numbers); exit 1
    on a failed gate."""
    from llmship.loadtest.report import render_console

    display = _Display()
    try:
        outcome = ops.run(
            plan,
            slos,
            cfg,
            release=release,
            ref=ref,
            files=files,
            record_run=False,
            progress=display,
        )
    finally:
        display.close()
    report = outcome.report
    render_console(report, console)
    recording = ops.record(report, cfg, required=bool(release or ref)) if record else None
    if recording is not None and recording.run is None:
        err_console.print(f"[yellow]not recorded in the registry: {recording.error}[/]")
    elif recording is not None and recording.run is not None:
        run = recording.run
        err_console.print(f"recorded as gate run {run.id} of {run.ref} in env {run.env!r}")
    if report.error is not None:
        raise fail(report.error)  # exit 2: a run that checked nothing is no verdict
    if not report.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


class _Display:
    """Shows a load test's progress events on stderr: a transient progress bar while
    the generator runs, a line when a release is served, a warning when several answer."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, event: ops.Event) -> None:
        if isinstance(event, ServingRelease):
            err_console.print(f"starting [bold]llmship serve --release {event.ref}[/] ...")
        elif isinstance(event, Measuring):
            if self._bar is None or self._task is None:
                label = f"load test ({'open' if event.open_loop else 'closed'} loop)"
                self._bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TimeElapsedColumn(),
                    console=err_console,
                    transient=True,
                )
                self._bar.start()
                self._task = self._bar.add_task(label, total=event.total)
            self._bar.update(self._task, completed=event.elapsed)
        elif isinstance(event, Measured):
            self.close()
        elif isinstance(event, SeveralReleases):
            served = ", ".join(f"{v} ({n})" for v, n in event.versions.items())
            err_console.print(
                f"[yellow]several releases answered ({served}); pass --ref NAME@VERSION "
                "to attribute the run[/]"
            )

    def close(self) -> None:
        """Take the progress bar away (if one is shown)."""
        if self._bar is not None:
            self._bar.stop()
        self._bar = None
        self._task = None
