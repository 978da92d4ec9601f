"""The ``llmship`` command line."""

from __future__ import annotations

import typer

from llmship import __version__
from llmship.cli import (
    alerts,
    alias,
    approvals,
    controller,
    demo,
    feedback,
    flags,
    gateway,
    init,
    k8s,
    loadtest,
    models,
    pipeline,
    promote,
    release,
    rollback,
    rollout,
    serve,
    tokens,
    traffic,
    up,
)
from llmship.cli import eval as eval_cli
from llmship.cli._help import App

app = App(
    name="llmship",
    help="Release engineering for LLM services: registry, serving, gates, progressive delivery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmship {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Release engineering for LLM services."""


app.add_typer(models.app, name="models")
app.add_typer(alias.app, name="alias")
app.add_typer(traffic.app, name="traffic")
app.add_typer(feedback.app, name="feedback")
app.add_typer(flags.app, name="flags")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(rollout.app, name="rollout")
app.add_typer(k8s.app, name="k8s")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(approvals.app, name="approvals")
app.add_typer(alerts.app, name="alerts")
app.add_typer(tokens.app, name="tokens")
serve.register(app)
loadtest.register(app)
gateway.register(app)
controller.register(app)
up.register(app)
rollback.register(app)
init.register(app)
release.register(app)
demo.register(app)
promote.register(app)
approvals.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
