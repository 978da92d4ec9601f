"""``llmship init``: write the files of a new project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmship.cli._common import handle_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``init`` to the root command."""

    @app.command("init")
    @handle_errors
    def init(
        directory: Annotated[
            Path,
            typer.Argument(metavar="DIR", help="Where to write the project (created if missing)."),
        ] = Path("."),
        force: Annotated[
            bool, typer.Option("--force", help="Overwrite the files init writes if they exist.")
        ] = False,
    ) -> None:
        """Start a project: llmship.yaml (settings, gates, environments), a release spec
        of the bundled model in models/, a canary in rollouts/, a golden dataset in
        evals/, a regression test in tests/, a GitHub workflow of the change flow in
        .github/workflows/llmship.yml, a Dockerfile, a locustfile.py, and .llmship/ in
        .gitignore (docs/init.md).

        Nothing is overwritten without --force; other files are left alone.
        """
        from llmship.release.bundled import bundled_spec
        from llmship.scaffold import write_project

        written = write_project(directory, force=force)
        for path in written:
            typer.echo(f"wrote {path}")
        spec = bundled_spec()
        where = "" if directory == Path(".") else f"cd {directory}\n  "
        typer.echo(
            "\nnext:\n"
            f"  {where}llmship models register models/{spec.name}-{spec.version}.yaml\n"
            f"  llmship alias set production {spec.ref}\n"
            "  llmship up                      # runs until Ctrl-C: go on in another terminal\n"
            "  pytest tests/ -v                # regression tests of production"
        )
