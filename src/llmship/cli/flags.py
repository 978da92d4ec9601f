"""``llmship flags``: feature toggles with sticky percentage rollout and targeting."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llmship.cli._common import (
    Format,
    FormatOption,
    console,
    handle_errors,
    open_registry,
    reason_option,
    settings,
)
from llmship.cli._help import App
from llmship.errors import InvalidRequestError, NotFoundError
from llmship.flags.model import Flag, parse_conditions

app = App(
    help="Set, list and delete feature flags (on/off, a sticky percent of users, targeting).",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env", "-e", metavar="ENV", help="Environment of the flags (default: LLMSHIP_ENV or dev)."
    ),
]
NONE = "none"


def describe(flag: Flag) -> str:
    """``on for 25% of users when plan=pro, routed to chat@1.1.0``, or ``off``."""
    if not flag.enabled:
        return "off"
    text = f"on for {flag.percent:g}% of users"
    if flag.conditions:
        text += " when " + ", ".join(f"{k}={v}" for k, v in sorted(flag.conditions.items()))
    if flag.release:
        text += f", routed to {flag.release}"
    return text


@app.command("set")
@handle_errors
def set_(
    name: Annotated[str, typer.Argument(help="Flag name, e.g. new-prompt.")],
    enabled: Annotated[
        bool | None, typer.Option("--on/--off", help="Turn the flag on or off.")
    ] = None,
    percent: Annotated[
        float | None,
        typer.Option(
            metavar="P", help="Percent of users (sticky by X-User-Id) the flag is on for."
        ),
    ] = None,
    when: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ATTRIBUTE=VALUE",
            help="Only for requests with this attribute, ATTRIBUTE=VALUE (repeat for more; "
            "'none' clears).",
        ),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@VERSION",
            help="Route the requests the flag is on for to NAME@VERSION ('none' clears).",
        ),
    ] = None,
    env: EnvOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Route even without the passing gates llmship.yaml requires for a flag that "
            "sends a release all of the traffic (or more than guard_above percent); "
            "recorded as a gate.forced event, needs --reason.",
        ),
    ] = False,
    reason: Annotated[str | None, reason_option("kept with a forced change")] = None,
) -> None:
    """Create or change flag NAME; an existing flag keeps every field not given."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        try:
            flag: Flag | None = registry.get_flag(cfg.env, name)
        except NotFoundError:
            flag = None
        if flag is None:
            if enabled is None:
                raise InvalidRequestError(f"flag {name} is new in {cfg.env}: give --on or --off")
            flag = Flag(name=name)
        if enabled is not None:
            flag = replace(flag, enabled=enabled)
        if percent is not None:
            flag = replace(flag, percent=percent)
        if when:
            conditions = {} if when == [NONE] else parse_conditions(when)
            flag = replace(flag, conditions=conditions)
        if release is not None:
            target = None if release.strip().lower() == NONE else release
            flag = replace(flag, release=target)
        flag = registry.set_flag(cfg.env, flag, actor=cfg.actor, force=force, reason=reason or "")
    typer.echo(f"flag {flag.name} in {cfg.env}: {describe(flag)}")


@app.command("list")
@handle_errors
def list_(
    env: EnvOption = None,
    output: FormatOption = Format.table,
) -> None:
    """List the flags of an environment: state, percent, targeting, release."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        flags = registry.list_flags(cfg.env)
    if output is Format.json:
        typer.echo(json.dumps([f.to_dict() for f in flags], indent=2))
        return
    if not flags:
        typer.echo(f"no flags in {cfg.env} yet: llmship flags set NAME --on")
        return
    table = Table(title=f"flags in {cfg.env}", title_justify="left")
    for column in ("flag", "state", "percent", "when", "release"):
        table.add_column(column, overflow="fold")
    for f in flags:
        table.add_row(
            f.name,
            "on" if f.enabled else "off",
            f"{f.percent:g}%",
            escape(", ".join(f"{k}={v}" for k, v in sorted(f.conditions.items())) or "-"),
            f.release or "-",
        )
    console.print(table)


@app.command("delete")
@handle_errors
def delete(
    name: Annotated[str, typer.Argument(help="Flag name.")],
    env: EnvOption = None,
) -> None:
    """Delete flag NAME (the deletion is recorded as an event)."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        registry.delete_flag(cfg.env, name, actor=cfg.actor)
    typer.echo(f"deleted flag {name} in {cfg.env}")
