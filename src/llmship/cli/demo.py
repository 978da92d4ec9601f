"""``llmship demo``: the change flow on the bundled model, from an empty directory. The
workflow is :func:`llmship.pipeline.demo.run_demo`; this module prints its progress,
where to look, and exits 0 when both candidates ended as expected, 1 otherwise."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from llmship.cli._common import EXIT_REFUSED, console, fail
from llmship.errors import ConflictError, InvalidRequestError, LlmshipError

if TYPE_CHECKING:
    from types import FrameType

    from llmship.pipeline.demo import DemoEvent, DemoResult

__all__ = ["register"]

EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root command."""

    @app.command("demo")
    def demo(
        directory: Annotated[
            Path,
            typer.Argument(metavar="DIR", help="Where to write the demo project (new or empty)."),
        ] = Path("llmship-demo"),
        force: Annotated[
            bool,
            typer.Option("--force", help="Write into DIR even when it is not empty."),
        ] = False,
        keep_running: Annotated[
            bool,
            typer.Option(
                "--keep-running",
                help="Keep both stacks running at the end, until Ctrl-C (default: stop them).",
            ),
        ] = False,
    ) -> None:
        """Show the whole change flow on the bundled model, in a few minutes: write a
        demo project into DIR (environments staging and prod, a golden set, a canary
        for prod, a good and a bad candidate), start `llmship up --env staging` and
        `--env prod`, then run `llmship pipeline run` on the good candidate (promoted
        into prod) and on the bad one (rejected, prod untouched).

        Prints where to look afterwards (the prod gateway, the pipeline reports,
        `llmship rollout history --env prod`, `llmship pipeline list`), then stops the
        stacks, or keeps them with --keep-running until Ctrl-C. Exits 0 when both
        candidates ended as expected, 1 otherwise, 2 when DIR is not empty, 130 on
        Ctrl-C (the stacks are stopped first).
        """
        from llmship.pipeline.demo import DemoOptions, run_demo

        options = DemoOptions(directory=directory, force=force, keep_running=keep_running)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # stop the stacks on kill too
        # Ctrl-C stops the stacks also where SIGINT came ignored (a job a script started
        # in the background), as `llmship up` takes it back
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            result = run_demo(
                options,
                progress=_print,
                hold=lambda r: _hold(r, keep_running=keep_running),
            )
        except (ConflictError, InvalidRequestError) as exc:
            raise fail(exc.message) from None
        except LlmshipError as exc:
            raise fail(exc.message, code=EXIT_REFUSED) from None
        except KeyboardInterrupt:
            console.print("interrupted: the stacks are stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        console.print("stopped both stacks")
        if not result.ok:
            raise typer.Exit(EXIT_REFUSED)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print(event: DemoEvent) -> None:
    if event.kind == "step":
        console.print(f"\n[bold]== {escape(event.message)}[/]", highlight=False, soft_wrap=True)
    elif event.kind == "note":
        console.print(f"   {escape(event.message)}", highlight=False, soft_wrap=True)
    else:
        console.print(f"   | {escape(event.message)}", highlight=False, soft_wrap=True)


def _hold(result: DemoResult, *, keep_running: bool) -> None:
    """Print the outcome and where to look, while the stacks still run."""
    minutes, seconds = divmod(round(result.seconds), 60)
    verdict = (
        "[bold green]both candidates ended as expected[/]"
        if result.ok
        else "[bold red]a candidate did not end as expected[/]"
    )
    console.print(f"\n{verdict} ({minutes}m{seconds:02d}s)")
    for outcome in result.outcomes:
        console.print(f"  {escape(outcome.describe())}", highlight=False, soft_wrap=True)
    console.print("\nwhere to look:")
    pointers = result.pointers()
    width = max(len(what) for what, _ in pointers) + 1
    for what, where in pointers:
        console.print(f"  {what + ':':<{width}} {escape(where)}", highlight=False, soft_wrap=True)
    if keep_running:
        console.print(
            "\nboth stacks keep running (try the prod gateway); Ctrl-C stops them",
            highlight=False,
        )
    else:
        again = f"cd {shlex.quote(result.project.shown)} && llmship up --env prod"
        console.print(
            f"\nstopping both stacks (to serve prod again: {escape(again)}; "
            "or run the demo with --keep-running)",
            highlight=False,
            soft_wrap=True,
        )
