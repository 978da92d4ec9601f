"""``llmship traffic``: read and change where an environment's requests go."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from llmship.cli._common import (
    console,
    handle_errors,
    open_registry,
    reason_option,
    settings,
)
from llmship.cli._help import App
from llmship.errors import InvalidRequestError
from llmship.registry.records import given_reason
from llmship.release.promotion_guard import check_promotion
from llmship.routing.policy import Experiment, TrafficPolicy, Variant

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
NONE = "none"
VARIANTS_HELP = "--variants: write NAME=RELEASE:WEIGHT,... (e.g. A=chat@1.0.0:50,B=chat@1.1.0:50)"


class Format(str, Enum):
    """Output formats of `traffic show`."""

    table = "table"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="table or json.")]


@dataclass(frozen=True)
class Changes:
    """What `traffic set` was asked to change; None means "leave as it is"."""

    canary: str | None = None
    weight: float | None = None
    preview: str | None = None
    experiment: str | None = None
    variants: str | None = None
    shadow: str | None = None
    percent: float | None = None

    def any(self) -> bool:
        """True when at least one change was asked for."""
        return any(value is not None for value in vars(self).values())


def _is_none(value: str) -> bool:
    return value.strip().lower() == NONE


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``A=chat@1.0.0:50,B=chat@1.1.0:50`` -> the variants, strictly."""
    variants = []
    for item in text.split(","):
        name, eq, rest = item.strip().partition("=")
        ref, colon, weight = rest.rpartition(":")
        if not (eq and colon and name.strip() and ref.strip() and weight.strip()):
            raise InvalidRequestError(f"{VARIANTS_HELP}; got {item.strip()!r}", param="variants")
        try:
            share = float(weight)
        except ValueError:
            raise InvalidRequestError(
                f"{VARIANTS_HELP}; the weight {weight!r} of {name.strip()} is not a number",
                param="variants",
            ) from None
        variants.append(Variant(name.strip(), ref.strip(), share))
    return tuple(variants)


def _share(
    env: str,
    running: tuple[str | None, float],
    ref: str | None,
    share: float | None,
    *,
    role: str,
    unit: str,
) -> tuple[str | None, float] | None:
    """The new (release, percent) of a canary or shadow; None when unchanged.

    ``--ROLE REF`` with ``--UNIT N`` starts or changes it, ``--UNIT`` alone
    changes the running one's share, ``--ROLE none`` or ``--UNIT 0`` ends it.
    """
    current_ref, current_share = running
    if ref is not None:
        if _is_none(ref):
            if share:
                raise InvalidRequestError(f"--{role} none ends the {role}: leave out --{unit}")
            return None, 0.0
        if share == 0:
            return None, 0.0
        if share is None and current_ref is not None:
            share = current_share
        if share is None:
            raise InvalidRequestError(
                f"--{role} {ref}: give --{unit} N too (the percent of requests for it)",
                param=unit,
            )
        return ref, share
    if share is None:
        return None if current_ref is None else (current_ref, current_share)
    if current_ref is None:
        raise InvalidRequestError(
            f"--{unit} sets the {role}'s share, but no {role} runs in {env}: "
            f"give --{role} NAME@VERSION too",
            param=unit,
        )
    return (None, 0.0) if share == 0 else (current_ref, share)


def _experiment(policy: TrafficPolicy, changes: Changes) -> Experiment | None:
    """The experiment after ``changes``."""
    if changes.experiment is not None:
        if _is_none(changes.experiment):
            if changes.variants is not None:
                raise InvalidRequestError(
                    "--experiment none ends the experiment: leave out --variants"
                )
            return None
        if changes.variants is None:
            raise InvalidRequestError(
                f"--experiment {changes.experiment}: give its variants too; {VARIANTS_HELP}",
                param="variants",
            )
        return Experiment(changes.experiment.strip(), parse_variants(changes.variants))
    if changes.variants is None:
        return policy.experiment
    if policy.experiment is None:
        raise InvalidRequestError(
            f"--variants changes the running experiment, but none runs in {policy.env}: "
            "give --experiment NAME too",
            param="variants",
        )
    return Experiment(policy.experiment.name, parse_variants(changes.variants))


def apply(policy: TrafficPolicy, changes: Changes) -> TrafficPolicy:
    """``policy`` with ``changes`` (not yet checked against the registry)."""
    env = policy.env
    canary = _share(
        env,
        (policy.canary, policy.canary_weight),
        changes.canary,
        changes.weight,
        role="canary",
        unit="weight",
    )
    shadow = _share(
        env,
        (policy.shadow, policy.shadow_percent),
        changes.shadow,
        changes.percent,
        role="shadow",
        unit="percent",
    )
    preview = policy.preview
    if changes.preview is not None:
        preview = None if _is_none(changes.preview) else changes.preview
    return replace(
        policy,
        canary=canary[0] if canary else None,
        canary_weight=canary[1] if canary else 0.0,
        preview=preview,
        experiment=_experiment(policy, changes),
        shadow=shadow[0] if shadow else None,
        shadow_percent=shadow[1] if shadow else 0.0,
    )


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
            help="With --promote-preview: promote even without the passing gates "
            "llmship.yaml requires (recorded as a gate.forced event).",
        ),
    ] = False,
    env: EnvOption = None,
    reason: Annotated[str | None, reason_option("kept in the events")] = None,
) -> None:
    """Change the traffic policy; the options apply on top of the current policy.

    Options combine (e.g. a canary and a shadow at once). `--weight` alone changes
    the running canary's share; `--weight 0` or `--canary none` ends it. Prints
    the resulting policy.
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
    with open_registry(cfg) as registry:
        why = given_reason(reason)
        if promote_preview:
            preview_ref = registry.get_traffic(cfg.env).preview
            if preview_ref is not None:  # without one, promote_preview says what to do
                # --force needs a reason of its own: the guard sees only the one given
                forced = check_promotion(
                    registry,
                    cfg.env,
                    preview_ref,
                    force=force,
                    reason=reason or "",
                    actor=cfg.actor,
                )
                why = given_reason(forced)
            policy = registry.promote_preview(cfg.env, actor=cfg.actor, reason=why)
        else:
            policy = registry.get_traffic(cfg.env)
        if reset and not changes.any():
            policy = registry.reset_traffic(cfg.env, actor=cfg.actor, reason=why)
        elif changes.any():
            start = TrafficPolicy(env=cfg.env, stable=policy.stable) if reset else policy
            policy = registry.set_traffic(
                cfg.env,
                apply(start, changes),
                actor=cfg.actor,
                reason=why,
                expected_revision=policy.revision,
            )
    print_policy(policy)
