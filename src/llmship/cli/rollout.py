"""``llmship rollout``: start rollouts, watch them, and ask the controller to act.

``start`` and ``undo`` act at once; ``promote``, ``pause``, ``resume``, ``abort``
and ``retry`` are checked now and recorded as intents, which the controller
(the one ``llmship up`` runs, or ``llmship controller``) applies on its next
pass (within its interval).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

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
from llmship.registry import Registry
from llmship.registry.records import given_reason

app = App(
    help="Progressive delivery: start a rollout (canary, blue-green, A/B, shadow), watch it, "
    "promote, pause, resume, abort, retry, undo.",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        help="Environment of the rollout (default: LLMSHIP_ENV or dev).",
    ),
]
TargetArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="NAME|ID",
        help="The rollout: its id or name (default: the active rollout of the environment).",
        show_default=False,
    ),
]
ReasonOption = Annotated[str | None, reason_option("kept in the rollout's events")]
WATCH_REFRESH_S = 1.0


PHASE_STYLE = {
    "Pending": "yellow",
    "Progressing": "cyan",
    "Paused": "yellow",
    "Healthy": "green",
    "Aborted": "red",
}
FINAL = ("Healthy", "Aborted")
RUN_STYLE = {
    "Successful": "green",
    "Failed": "red",
    "Error": "red",
    "Inconclusive": "yellow",
    "Running": "cyan",
    "Pending": "dim",
}


@app.command("start")
@handle_errors
def start(
    spec: Annotated[
        Path,
        typer.Argument(metavar="SPEC", help="Rollout spec file, e.g. rollouts/chat-canary.yaml."),
    ],
    candidate: Annotated[
        str,
        typer.Option(
            "--candidate",
            "-c",
            metavar="REF",
            help="The release to roll out: NAME@VERSION or an alias of the environment "
            "(e.g. staging).",
        ),
    ],
    env: EnvOption = None,
    reason: ReasonOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start even when the candidate lacks the passing gates llmship.yaml "
            "requires (needs --reason; recorded as a gate.forced event).",
        ),
    ] = False,
) -> None:
    """Start rolling the --candidate release out in the environment with the strategy
    of SPEC.

    Refused at once when the spec is invalid, the candidate is not registered or
    already production, another rollout runs in the environment, or llmship.yaml
    requires gates (`gates: require:`) the candidate has not passed (unless
    --force --reason). The controller runs it: the one `llmship up` starts, or
    `llmship controller`.
    """
    from llmship.rollout import load_rollout, ops

    rollout_spec = load_rollout(spec)
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        # an alias (staging, canary) names the release it points at now, as for eval
        ref = registry.resolve(candidate, env=cfg.env).ref
        record = ops.start(
            registry,
            rollout_spec,
            ref,
            env=cfg.env,
            actor=cfg.actor,
            # --force needs a reason of its own: the guard sees only the one given
            reason=(reason or "") if force else given_reason(reason),
            force=force,
        )
    typer.echo(
        f"rollout {record.name} (id {record.id}) of {record.candidate} in {record.env}: "
        f"{record.strategy} from {record.stable}; the controller of `llmship up` picks it up; "
        f"without `llmship up`, run `llmship controller --env {record.env}`"
    )


def _intent(kind: str, target: str | None, env: str | None, reason: str | None) -> None:
    from llmship.rollout import ops

    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        record, _ = ops.request(
            registry, cfg.env, target, kind, actor=cfg.actor, reason=given_reason(reason)
        )
    what = {"promoteFull": "full promotion"}.get(kind, kind)
    typer.echo(
        f"{what} of rollout {record.name} (id {record.id}) requested; the controller applies "
        "it on its next pass (the one `llmship up` runs, or `llmship controller`)"
    )


@app.command("promote")
@handle_errors
def promote(
    target: TargetArgument = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Skip every remaining step and analysis: promote now."),
    ] = False,
    env: EnvOption = None,
    reason: ReasonOption = None,
) -> None:
    """Go on past the current step (a pause, an analysis, an Inconclusive verdict), or
    with --full promote the candidate now."""
    _intent("promoteFull" if full else "promote", target, env, reason)


@app.command("pause")
@handle_errors
def pause(
    target: TargetArgument = None, env: EnvOption = None, reason: ReasonOption = None
) -> None:
    """Hold the rollout where it is (weights stay; analysis goes on; timers stop)."""
    _intent("pause", target, env, reason)


@app.command("resume")
@handle_errors
def resume(
    target: TargetArgument = None, env: EnvOption = None, reason: ReasonOption = None
) -> None:
    """Lift a pause, and go on past what waits for a person: `pause: {}`, a blue-green
    preview without automatic promotion, an Inconclusive analysis."""
    _intent("resume", target, env, reason)


@app.command("abort")
@handle_errors
def abort(
    target: TargetArgument = None, env: EnvOption = None, reason: ReasonOption = None
) -> None:
    """Put all traffic back on stable at once; the rollout ends Aborted."""
    _intent("abort", target, env, reason)


@app.command("retry")
@handle_errors
def retry(
    target: TargetArgument = None, env: EnvOption = None, reason: ReasonOption = None
) -> None:
    """Start an Aborted rollout again from its first step."""
    _intent("retry", target, env, reason)


@app.command("undo")
@handle_errors
def undo(
    env: EnvOption = None,
    reason: Annotated[str | None, reason_option("kept in the alias history")] = None,
) -> None:
    """Move production back to the release it pointed at before (its alias history);
    refused while a rollout runs (abort that instead)."""
    from llmship.rollout import ops

    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        move = ops.undo(registry, cfg.env, actor=cfg.actor, reason=given_reason(reason))
    typer.echo(f"production in {cfg.env}: {move.from_ref} -> {move.to_ref}")


@app.command("list")
@handle_errors
def list_(
    env: EnvOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 20,
    output: FormatOption = Format.table,
) -> None:
    """List the environment's rollouts, newest first."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        records = registry.list_rollouts(cfg.env, limit=limit)
    if output is Format.json:
        rows = [
            {
                "id": r.id,
                "name": r.name,
                "strategy": r.strategy,
                "candidate": r.candidate,
                "stable": r.stable,
                "phase": r.phase,
                "active": r.active,
                "message": r.message,
                "created_at": r.created_at.isoformat(),
                "created_by": r.created_by,
            }
            for r in records
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not records:
        typer.echo(f"no rollouts in {cfg.env} yet: llmship rollout start SPEC --candidate ...")
        return
    table = Table(title=f"rollouts in {cfg.env}", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("strategy")
    table.add_column("stable -> candidate", overflow="fold")
    table.add_column("phase", no_wrap=True)
    table.add_column("started (UTC)")
    for r in records:
        style = PHASE_STYLE.get(r.phase, "")
        table.add_row(
            str(r.id),
            r.name,
            r.strategy,
            f"{r.stable or '-'} -> {r.candidate}",
            f"[{style}]{r.phase}[/]" if style else r.phase,
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@app.command("history")
@handle_errors
def history(
    target: TargetArgument = None, env: EnvOption = None, output: FormatOption = Format.table
) -> None:
    """Every transition of a rollout, oldest first: when, who, what and why."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        record = registry.find_rollout(cfg.env, target)
        events = registry.rollout_events(record.id)
    if output is Format.json:
        rows = [
            {"at": e.at.isoformat(), "actor": e.actor, "kind": e.kind, "message": e.message}
            for e in events
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        title=f"history of rollout {record.name} (id {record.id}) in {record.env}",
        title_justify="left",
    )
    for column in ("at", "who", "what", "message"):
        table.add_column(column, overflow="fold")
    prefix = f"rollout {record.name} (id {record.id}): "
    for e in events:
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            escape(e.actor),
            e.kind.removeprefix("rollout."),
            escape(e.message.removeprefix(prefix)),
        )
    console.print(table)


@app.command("status")
@handle_errors
def status(
    target: TargetArgument = None,
    env: EnvOption = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Keep the view live until the rollout ends (Ctrl-C)."),
    ] = False,
    output: FormatOption = Format.table,
) -> None:
    """Show a rollout: strategy, phase, step, weights, pauses, and its analysis runs
    with their measurements, and which controller leads the environment."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        if output is Format.json:
            typer.echo(json.dumps(_status(registry, cfg.env, target), indent=2, default=str))
            return
        data = _status(registry, cfg.env, target)
        if not watch:
            console.print(_render(data))
            return
        target = str(data["id"])
        try:
            with Live(_render(data), console=console, refresh_per_second=4) as live:
                while data["phase"] not in ("Healthy", "Aborted"):
                    time.sleep(WATCH_REFRESH_S)
                    data = _status(registry, cfg.env, target)
                    live.update(_render(data))
        except KeyboardInterrupt:
            return


def _status(registry: Registry, env: str, target: str | None) -> dict[str, Any]:
    from llmship.rollout import ops

    record = registry.find_rollout(env, target)
    policy = registry.get_traffic(env)
    measurements = registry.list_measurements(record.id)
    return {**ops.status(record, policy, measurements), "leader": _leader(registry, env)}


def _leader(registry: Registry, env: str) -> dict[str, Any]:
    """The controller holding the lease ``controller/ENV``, or what to do when none does."""
    from datetime import datetime, timezone

    from llmship.rollout.controller import lease_name

    name = lease_name(env)
    lease = registry.get_lease(name)
    now = datetime.now(timezone.utc)
    if lease is None or not lease.live(now):
        return {
            "lease": name,
            "holder": None,
            "token": lease.token if lease is not None else None,
            "last_holder": lease.holder if lease is not None else None,
            "expired_at": lease.expires_at.isoformat() if lease is not None else None,
            "message": f"no controller holds the lease {name}: start one with "
            f"`llmship controller --env {env}` (or `llmship up`)",
        }
    return {
        "lease": name,
        "holder": lease.holder,
        "token": lease.token,
        "acquired_at": lease.acquired_at.isoformat(),
        "renewed_at": lease.renewed_at.isoformat(),
        "renewed_s_ago": round(max(0.0, (now - lease.renewed_at).total_seconds()), 1),
        "expires_at": lease.expires_at.isoformat(),
    }


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(json.dumps(value))[:40]


def _render_leader(leader: dict[str, Any], *, finished: bool) -> str:
    if leader["holder"] is not None:
        return (
            f"{escape(leader['holder'])} leads (token {leader['token']}, "
            f"renewed {leader['renewed_s_ago']:g} s ago)"
        )
    if finished:
        return "[dim]none running[/]"
    return f"[yellow]{escape(leader['message'])}; until then the rollout does not progress[/]"


def _render(data: dict[str, Any]) -> Group:
    style = PHASE_STYLE.get(data["phase"], "")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("strategy", data["strategy"])
    head.add_row("phase", f"[{style}]{data['phase']}[/]" if style else data["phase"])
    head.add_row("step", escape(data["step"]) + f" (attempt {data['attempt']})")
    head.add_row("candidate", data["candidate"])
    head.add_row("stable", data["stable"] or "-")
    weights = data.get("weights") or {}
    head.add_row("weights", ", ".join(f"{k} {v:g}%" for k, v in weights.items()) or "-")
    traffic = data.get("traffic") or {}
    if traffic.get("preview"):
        head.add_row("preview", traffic["preview"])
    if traffic.get("shadow"):
        shadow = traffic["shadow"]
        head.add_row("shadow", f"{shadow['release']} {shadow['percent']:g}% mirrored")
    for key, label in (
        ("pause_reason", "paused"),
        ("blocked", "waiting"),
        ("abort_reason", "aborted"),
    ):
        if data.get(key):
            head.add_row(label, escape(str(data[key])))
    head.add_row("last", escape(data["message"]))
    leader = data.get("leader")
    if leader is not None:
        head.add_row("controller", _render_leader(leader, finished=data["phase"] in FINAL))
    parts: list[Any] = [
        Panel(
            head,
            title=f"rollout {escape(data['name'])} (id {data['id']}) in {data['env']}",
            title_align="left",
        )
    ]
    if data["runs"]:
        runs = Table(title="analysis", title_justify="left")
        for column in ("run", "phase", "metric", "n", "last value", "last"):
            runs.add_column(column, overflow="fold")
        for run in data["runs"]:
            run_style = RUN_STYLE.get(run["phase"], "")
            phase = f"[{run_style}]{run['phase']}[/]" if run_style else run["phase"]
            if not run["metrics"]:
                runs.add_row(run["name"], phase, "-", "0", "-", escape(run["message"]))
            for i, metric in enumerate(run["metrics"]):
                last_style = RUN_STYLE.get(metric["last_phase"], "")
                runs.add_row(
                    run["name"] if i == 0 else "",
                    phase if i == 0 else "",
                    metric["metric"],
                    str(metric["measurements"]),
                    _value(metric["last_value"]),
                    Text(metric["last_phase"], style=last_style)
                    + Text(f" {metric['last_message']}"),
                )
        parts.append(runs)
    return Group(*parts)
