"""``llmship k8s validate``: check a chart or a folder of manifests by the real schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llmship.cli._common import console, err_console, handle_errors
from llmship.k8s.validate import KUBERNETES_VERSION, validate_path

__all__ = ["register"]

EXIT_INVALID = 1


@handle_errors
def validate(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="A chart folder (with Chart.yaml), a folder of manifests, or one manifest file.",
            show_default=False,
        ),
    ],
    values: Annotated[
        list[Path] | None,
        typer.Option(
            "--values",
            metavar="FILE",
            help="Values file for the chart (repeatable; later files win, as with helm -f).",
            show_default=False,
        ),
    ] = None,
    kubernetes_version: Annotated[
        str,
        typer.Option(
            "--kubernetes-version",
            metavar="X.Y.Z",
            help="Kubernetes version whose schemas core kinds are checked against.",
        ),
    ] = KUBERNETES_VERSION,
) -> None:
    """Validate every object of a chart (rendered and linted with Helm) or of manifest files.

    Core kinds are checked strictly against the Kubernetes schemas, Argo Rollouts and
    prometheus-operator resources against their CRD schemas; any other kind is an error.
    Exit 0 when all are valid, 1 when something is invalid, 2 on bad input.
    """
    report = validate_path(path, values or [], kubernetes_version)
    for error in report.errors:
        err_console.print(escape(error), highlight=False, soft_wrap=True)
    if not report.ok:
        err_console.print(f"[bold red]invalid:[/] {escape(report.summary())}", highlight=False)
        raise typer.Exit(EXIT_INVALID)
    console.print(escape(report.summary()), highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``llmship k8s``."""
    app.command("validate")(validate)
