"""``llmship approvals``, ``approve`` and ``reject``: promotions that wait for a person."""

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
    reason_option,
    settings,
)
from llmship.cli._help import App

__all__ = ["app", "register"]

app = App(
    help="List the promotions that wait for (or got) a person's approval.", no_args_is_help=True
)

ApprovalId = Annotated[
    int,
    typer.Argument(metavar="ID", help="The approval's id (`llmship approvals list` shows it)."),
]


class State(str, Enum):
    """The states of an approval."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"


@app.command("list")
@handle_refusals
def list_(
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", metavar="ENV", help="Only promotions into ENV (default: every one)."
        ),
    ] = None,
    state: Annotated[
        State | None, typer.Option("--state", help="Only those in this state.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most N, newest first.")
    ] = 50,
    output: FormatOption = Format.table,
) -> None:
    """List approvals, newest first: the release, from and into which environment,
    who asked and why, and who decided, when and why."""
    from llmship.pipeline.promotion import list_approvals

    cfg = settings()
    with open_registry(cfg) as registry:
        records = list_approvals(
            registry, env=env, state=state.value if state else None, limit=limit
        )
    if output is Format.json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        typer.echo("no approvals yet: `llmship promote NAME@VERSION --to ENV` asks for one")
        return
    table = Table(title="approvals", title_justify="left")
    for column in ("id", "release", "into", "state", "asked by", "decided by", "reason"):
        table.add_column(column, overflow="fold")
    for r in records:
        decided = f"{r.decided_by} {r.decided_at:%Y-%m-%d %H:%M}" if r.decided_at else "-"
        table.add_row(
            str(r.id),
            r.ref,
            f"{r.source_env or '?'} -> {r.env}",
            r.state,
            f"{r.requested_by} {r.requested_at:%Y-%m-%d %H:%M}",
            decided,
            r.decision_reason or r.request_reason,
        )
    console.print(table)


def register(root: typer.Typer) -> None:
    """Add ``approve`` and ``reject`` to the root command."""

    @root.command("approve")
    @handle_refusals
    def approve(
        approval: ApprovalId,
        reason: Annotated[str | None, reason_option("kept with the approval")] = None,
    ) -> None:
        """Approve a pending promotion and carry it out: the target environment's
        rollout starts, or its production alias moves.

        The person who asked cannot approve it too, unless llmship.yaml allows it
        (`environments: ENV: self_approval: true`). Everything `llmship promote`
        checks is checked again first. Exit 2 for an unknown id, 1 when refused (decided
        already, self-approval, gates missing now); nothing changes then.
        """
        from llmship.environments import load_environments
        from llmship.pipeline.promotion import approve as approve_promotion

        cfg = settings()
        envs = load_environments()
        with open_registry(cfg) as registry:
            promotion = approve_promotion(
                registry, envs, approval, actor=cfg.actor, reason=reason or ""
            )
        typer.echo(promotion.message)

    @root.command("reject")
    @handle_refusals
    def reject(
        approval: ApprovalId,
        reason: Annotated[
            str | None,
            typer.Option(
                "--reason",
                "-r",
                metavar="TEXT",
                help="Why it is rejected (required; kept with the approval).",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Reject a pending promotion (--reason says why); nothing moves.

        Exit 2 for an unknown id or no reason, 1 when it was decided already.
        """
        from llmship.pipeline.promotion import reject as reject_promotion

        cfg = settings()
        with open_registry(cfg) as registry:
            record = reject_promotion(registry, approval, actor=cfg.actor, reason=reason or "")
        typer.echo(
            f"approval {record.id} rejected: {record.ref} stays out of {record.env} "
            f"({record.decision_reason}); {record.requested_by} may ask again with "
            f"`llmship promote {record.ref} --to {record.env}`"
        )
