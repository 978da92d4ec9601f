"""``llmship feedback``: what users thought of each release's answers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from llmship.cli._common import (
    Format,
    FormatOption,
    ReleaseOption,
    console,
    deprecated,
    handle_errors,
    open_registry,
    release_filter,
    settings,
)
from llmship.cli._help import App

app = App(
    help="Read user feedback (ratings and thumbs) per release.",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        help="Environment whose feedback to read (default: LLMSHIP_ENV or dev).",
    ),
]


@app.command("summary")
@handle_errors
def summary(
    env: EnvOption = None,
    release: ReleaseOption = None,
    output: FormatOption = Format.table,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", metavar="NAME@VERSION", hidden=True, help="Deprecated: use --release."
        ),
    ] = None,
) -> None:
    """Per release: how many ratings and their mean, thumbs up and down, and the up rate.

    Feedback belongs to the release that answered the query it is about.
    """
    release = deprecated("--version", "--release", version, release)
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        chosen = release_filter(registry, release, cfg.env) if release else None
        rows = registry.feedback_summary(cfg.env, chosen.ref if chosen else None)
    if chosen is not None:
        rows = [row for row in rows if chosen.matches(row.ref)]
    if output is Format.json:
        data = [
            {
                "ref": s.ref,
                "ratings": s.ratings,
                "mean_rating": s.mean_rating,
                "thumbs_up": s.thumbs_up,
                "thumbs_down": s.thumbs_down,
                "thumbs_up_rate": s.thumbs_up_rate,
            }
            for s in rows
        ]
        typer.echo(json.dumps(data, indent=2))
        return
    if not rows:
        typer.echo(
            f"no feedback in {cfg.env} yet"
            + (f" for {chosen}" if chosen else "")
            + ": clients send it to the gateway's POST /feedback"
        )
        return
    table = Table(title=f"feedback in {cfg.env}", title_justify="left")
    for column in ("release", "ratings", "mean", "thumbs up", "thumbs down", "up rate"):
        table.add_column(
            column, overflow="fold", justify="left" if column == "release" else "right"
        )
    for s in rows:
        rate = s.thumbs_up_rate
        table.add_row(
            s.ref,
            str(s.ratings),
            f"{s.mean_rating:.2f}" if s.mean_rating is not None else "-",
            str(s.thumbs_up),
            str(s.thumbs_down),
            f"{rate:.0%}" if rate is not None else "-",
        )
    console.print(table)
