"""``llmship rollback``: move an alias back to the release it pointed at before."""

from __future__ import annotations

from typing import Annotated

import typer

from llmship.cli._common import duration, handle_refusals, open_registry, reason_option, settings
from llmship.registry.records import given_reason

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``rollback`` to the root command."""

    @app.command("rollback")
    @handle_refusals
    def rollback(
        env: Annotated[
            str | None,
            typer.Option(
                "--env", "-e", metavar="ENV", help="Environment (default: LLMSHIP_ENV or dev)."
            ),
        ] = None,
        alias: Annotated[
            str, typer.Option("--alias", "-a", help="The alias to move back.")
        ] = "production",
        to: Annotated[
            str | None,
            typer.Option(
                "--to",
                metavar="REF",
                help="NAME@VERSION (or an alias) it served before, to go back to (default: "
                "where the alias pointed before its latest move).",
            ),
        ] = None,
        reason: Annotated[str | None, reason_option("kept in the alias history")] = None,
        wait: Annotated[
            str,
            typer.Option(
                "--wait",
                metavar="DURATION",
                help="How long to wait for the controller to apply the abort of a running "
                "rollout, e.g. 10s, 2m.",
            ),
        ] = "30s",
    ) -> None:
        """Move an alias (production) back to the release it pointed at before.

        The move is recorded in the alias history like any other, its reason kept as
        "rollback: REASON"; the gateway follows within a second. No gates are checked:
        it only goes back to a release the alias served before (`--to` picks an older
        one). Rolling back twice returns to where the first rollback started, as
        `helm rollback` does. While a rollout runs in the environment it is aborted
        first (all traffic back on stable, as `llmship rollout abort` does, applied by
        the controller, or here when none runs), then production moves back to the
        release before the rollout's stable one. Exit 2 on bad input (nothing to go
        back to, an unknown release), 1 when the abort was not applied within --wait.
        """
        from llmship.rollout import ops

        wait_s = duration("--wait", wait)
        cfg = settings(env=env)
        with open_registry(cfg) as registry:
            done = ops.rollback(
                registry,
                cfg.env,
                actor=cfg.actor,
                reason=given_reason(reason),
                alias=alias,
                to=to,
                wait_s=wait_s,
            )
        move, aborted = done.move, done.aborted
        if aborted is not None:
            typer.echo(
                f"aborted rollout {aborted.name} (id {aborted.id}) of {aborted.candidate} in "
                f"{cfg.env}: all traffic on {aborted.stable}"
            )
        typer.echo(f"{alias} in {cfg.env}: {move.from_ref} -> {move.to_ref} (rolled back)")
