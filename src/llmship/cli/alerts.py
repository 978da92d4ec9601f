"""``llmship alerts list``: what Alertmanager's alerts did to production after a promotion."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from llmship.cli._common import (
    Format,
    FormatOption,
    console,
    handle_refusals,
    open_registry,
    settings,
)
from llmship.cli._help import App

__all__ = ["app"]

app = App(
    help="What alerts did to production releases (on_alert: rollback or notify).",
    no_args_is_help=True,
)


class Action(str, Enum):
    """What an alert did."""

    rollback = "rollback"
    notify = "notify"
    ignored = "ignored"


@app.command("list")
@handle_refusals
def list_(
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", metavar="ENV", help="Only ENV's (default: every one)."),
    ] = None,
    action: Annotated[
        Action | None, typer.Option("--action", help="Only the alerts that did this.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most N, newest first.")
    ] = 50,
    output: FormatOption = Format.table,
) -> None:
    """List what each firing `action=rollback` alert for a production release did,
    newest first: moved production back (rollback), only noted (notify), or nothing,
    and why (ignored). Alerts during a rollout are in `llmship rollout history`."""
    cfg = settings()
    with open_registry(cfg) as registry:
        records = registry.list_alert_actions(
            env, action=action.value if action else None, limit=limit
        )
    if output is Format.json:
        rows = [
            {
                "id": r.id,
                "env": r.env,
                "alert": r.alertname,
                "release": r.ref,
                "action": r.action,
                "outcome": r.outcome,
                "created_at": r.created_at.isoformat(),
            }
            for r in records
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not records:
        typer.echo(
            "no alert has acted on a production release yet "
            "(environments: ENV: on_alert in llmship.yaml)"
        )
        return
    table = Table(title="alerts", title_justify="left")
    for column in ("id", "time", "env", "alert", "release", "action", "outcome"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(
            str(r.id),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            r.env,
            r.alertname,
            r.ref,
            r.action,
            r.outcome,
        )
    console.print(table)
