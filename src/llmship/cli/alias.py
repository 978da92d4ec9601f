"""``llmship alias``: move aliases (production, staging, canary) and read their history."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llmship.cli._common import (
    Format,
    FormatOption,
    console,
    env_reason,
    handle_errors,
    open_registry,
    reason_option,
    settings,
)
from llmship.cli._help import App
from llmship.errors import NotFoundError

app = App(
    help="Move aliases such as production between releases, list them, read their history.",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env", "-e", metavar="ENV", help="Environment of the alias (default: LLMSHIP_ENV or dev)."
    ),
]


PRODUCTION = "production"


@app.command("set")
@handle_errors
def set_(
    alias: Annotated[
        str,
        typer.Argument(metavar="ALIAS", help="Alias name, e.g. production, staging, canary."),
    ],
    ref: Annotated[
        str,
        typer.Argument(metavar="REF", help="NAME@VERSION, or another alias of the environment."),
    ],
    reason: Annotated[str | None, reason_option("kept in the alias history")] = None,
    env: EnvOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Move production even without the passing gates llmship.yaml requires "
            "(recorded as a gate.forced event; the history's reason starts with '\\[forced]').",
        ),
    ] = False,
) -> None:
    """Point ALIAS at a release; the move (from, to, who, why) is recorded.

    To roll back, set the alias to the release it pointed at before
    (`llmship alias history ALIAS` shows it). When llmship.yaml requires gates
    for the environment (`gates: require:`), production only takes a release
    whose eval and load-test runs passed, unless --force. --reason is required
    in an environment that says so (`environments: ENV: reason: required`, prod
    by default).
    """
    cfg = settings(env=env)
    why = env_reason(cfg.env, reason, "moving an alias")
    with open_registry(cfg) as registry:
        before = registry.get_alias(cfg.env, alias)
        # the registry guards production (--force needs a reason of its own)
        move = registry.set_alias(
            cfg.env, alias, ref, actor=cfg.actor, reason=why, force=force and alias == PRODUCTION
        )
    if before is not None and before.ref == move.to_ref:
        typer.echo(f"{alias} in {cfg.env} already points at {move.to_ref}; nothing changed")
        return
    typer.echo(f"{alias} in {cfg.env}: {move.from_ref or '(none)'} -> {move.to_ref}")


@app.command("list")
@handle_errors
def list_(env: EnvOption = None, output: FormatOption = Format.table) -> None:
    """List the aliases of an environment and the releases they point at."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        aliases = registry.list_aliases(cfg.env)
    if output is Format.json:
        rows = [
            {"env": a.env, "alias": a.alias, "ref": a.ref, "updated_at": a.updated_at.isoformat()}
            for a in aliases
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not aliases:
        typer.echo(
            f"no aliases in {cfg.env} yet: llmship alias set ALIAS NAME@VERSION --reason ..."
        )
        return
    table = Table(title=f"aliases in {cfg.env}", title_justify="left")
    for column in ("alias", "release", "updated"):
        table.add_column(column, overflow="fold")
    for a in aliases:
        table.add_row(a.alias, a.ref, f"{a.updated_at:%Y-%m-%d %H:%M:%S} UTC")
    console.print(table)


@app.command("history")
@handle_errors
def history(
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    env: EnvOption = None,
    output: FormatOption = Format.table,
) -> None:
    """Show every move of ALIAS, oldest first: when, from, to, who and why."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        moves = registry.alias_history(cfg.env, alias)
        if not moves:
            known = ", ".join(a.alias for a in registry.list_aliases(cfg.env)) or "none"
            raise NotFoundError(f"no alias {alias!r} in {cfg.env} (aliases there: {known})")
    if output is Format.json:
        rows = [
            {
                "at": m.at.isoformat(),
                "from": m.from_ref,
                "to": m.to_ref,
                "actor": m.actor,
                "reason": m.reason,
            }
            for m in moves
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"history of {alias} in {cfg.env}", title_justify="left")
    for column in ("at", "from", "to", "actor", "reason"):
        table.add_column(column, overflow="fold")
    for m in moves:
        table.add_row(
            f"{m.at:%Y-%m-%d %H:%M:%S} UTC",
            m.from_ref or "(none)",
            m.to_ref,
            escape(m.actor),
            escape(m.reason),
        )
    console.print(table)
