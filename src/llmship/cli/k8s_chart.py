"""``llmship k8s chart``: write the Helm chart."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llmship.cli._common import console, handle_errors
from llmship.k8s.chart import write_chart

__all__ = ["register"]


@handle_errors
def chart(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder to write the chart into (created; must be empty unless --force).",
            show_default=False,
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Write over the chart's files in a non-empty DIR.")
    ] = False,
) -> None:
    """Write the Helm chart (model servers, gateways, controllers, PostgreSQL, monitoring).

    The shipped Prometheus rules and Grafana dashboard go into its files/ folder.
    """
    written = write_chart(out, force=force)
    for name in written.files:
        console.print(escape(str(out / name)), highlight=False)
    folder = shlex.quote(str(out))
    console.print(
        f"wrote the llmship chart ({len(written.files)} files) to {escape(str(out))}; next:\n"
        f"  llmship k8s validate {escape(folder)} --values VALUES.yaml\n"
        f"  helm install llmship {escape(folder)} --namespace llmship --create-namespace "
        "--values VALUES.yaml",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``llmship k8s``."""
    app.command("chart")(chart)
