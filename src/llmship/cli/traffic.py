"""``llmship traffic``: read and change where an environment's requests go."""

from __future__ import annotations

import json
from typing import Annotated

import typer
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
from llmship.errors import InvalidRequestError
from llmship.registry import traffic_ops
from llmship.registry.traffic_ops import Changes
from llmship.routing.policy import TrafficPolicy

app = App(
    help="Show and change the traffic policy: canary, preview, A/B experiment, shadow.",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        help="Environment whose traffic to use (default: LLMSHIP_ENV or dev).",
    ),
]


def print_policy(policy: TrafficPolicy) -> None:
    """The policy as a table: role, release, share of requests."""
    table = Table(
        title=f"traffic in {policy.env} (revision {policy.revision})", title_justify="left"
    )
    for column in ("role", "release", "requests"):
        table.add_column(column, overflow="fold")
    weights = policy.weights()
    stable_share = f"{weights['stable']:g}%" if "stable" in weights else "0% (experiment)"
    table.add_row("stable (production)", policy.stable or "-", stable_share)
    if policy.canary:
        table.add_row("canary", policy.canary, f"{policy.canary_weight:g}%")
    else:
        table.add_row("canary", "-", "")
    table.add_row(
        "preview",
        policy.preview or "-",
        "on request (X-Llmship-Variant: preview)" if policy.preview else "",
    )
    if policy.experiment:
        for v in policy.experiment.variants:
            table.add_row(f"experiment {policy.experiment.name}: {v.name}", v.ref, f"{v.weight:g}%")
    else:
        table.add_row("experiment", "-", "")
    if policy.shadow:
        table.add_row("shadow", policy.shadow, f"{policy.shadow_percent:g}% mirrored")
    else:
        table.add_row("shadow", "-", "")
    console.print(table)


@app.command("show")
@handle_errors
def show(env: EnvOption = None, output: FormatOption = Format.table) -> None:
    """Show where requests go: stable (the production alias), canary and its weight,
    preview, experiment variants, shadow and its percent, and the policy's revision."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        policy = registry.get_traffic(cfg.env)
    if output is Format.json:
        typer.echo(json.dumps(policy.to_dict(), indent=2))
        return
    print_policy(policy)


@app.command("set")
@handle_errors
def set_(
    canary: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@VERSION",
            help="Canary release NAME@VERSION (with --weight), or 'none' to end it.",
        ),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(metavar="N", help="Percent of requests for the canary; 0 ends the canary."),
    ] = None,
    preview: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@VERSION",
            help="Preview release NAME@VERSION (only on request), or 'none'.",
        ),
    ] = None,
    promote_preview: Annotated[
        bool,
        typer.Option(
            "--promote-preview",
            help="Move the production alias to the preview release and clear the preview.",
        ),
    ] = False,
    experiment: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Start an A/B experiment of this name (with --variants), or 'none'.",
        ),
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(
            metavar="NAME=RELEASE:WEIGHT,...",
            help="Experiment arms: NAME=RELEASE:WEIGHT,... with weights adding to 100.",
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@VERSION",
            help="Mirror requests to NAME@VERSION (with --percent), or 'none'.",
        ),
    ] = None,
    percent: Annotated[
        float | None,
        typer.Option(
            metavar="P", help="Percent of requests mirrored to the shadow; 0 stops mirroring."
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Clear canary, preview, experiment and shadow first."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote the preview (--promote-preview), or give a release all of the "
            "traffic (or more than guard_above percent), even without the passing gates "
            "llmship.yaml requires (recorded as a gate.forced event; needs --reason).",
        ),
    ] = False,
    env: EnvOption = None,
    reason: Annotated[str | None, reason_option("kept in the events")] = None,
) -> None:
    """Change the traffic policy; the options apply on top of the current policy.

    Options combine (e.g. a canary and a shadow at once). `--weight` alone changes
    the running canary's share; `--weight 0` or `--canary none` ends it. Prints
    the resulting policy. --reason is required in an environment that says so
    (`environments: ENV: reason: required`, prod by default).
    """
    changes = Changes(
        canary=canary,
        weight=weight,
        preview=preview,
        experiment=experiment,
        variants=variants,
        shadow=shadow,
        percent=percent,
    )
    if promote_preview and (reset or preview is not None):
        raise InvalidRequestError(
            "--promote-preview promotes the current preview: leave out --reset and --preview"
        )
    if not (changes.any() or reset or promote_preview):
        raise InvalidRequestError(
            "nothing to change: give --canary, --weight, --preview, --promote-preview, "
            "--experiment, --variants, --shadow, --percent or --reset"
        )
    cfg = settings(env=env)
    env_reason(cfg.env, reason, "changing traffic")
    with open_registry(cfg) as registry:
        policy = traffic_ops.change(
            registry,
            cfg.env,
            changes,
            actor=cfg.actor,
            reason=reason,
            reset=reset,
            promote=promote_preview,
            force=force,
        )
    print_policy(policy)
