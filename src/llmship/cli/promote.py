"""``llmship promote``: move a release into the next environment, through its gates
and, where the environment wants one, a person's approval."""

from __future__ import annotations

from typing import Annotated

import typer

from llmship.cli._common import handle_refusals, open_registry, reason_option, settings

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``promote`` to the root command."""

    @app.command("promote")
    @handle_refusals
    def promote(
        ref: Annotated[
            str,
            typer.Argument(
                metavar="NAME@VERSION",
                help="The release: production in the source environment (or an alias there).",
            ),
        ],
        to: Annotated[
            str,
            typer.Option("--to", metavar="ENV", help="The environment to promote into, e.g. prod."),
        ],
        source: Annotated[
            str | None,
            typer.Option(
                "--from",
                metavar="ENV",
                help="The environment it is production in (default: the one listed before "
                "--to in llmship.yaml's environments:, e.g. staging before prod).",
            ),
        ] = None,
        reason: Annotated[
            str | None, reason_option("kept with the approval and in the alias history")
        ] = None,
        yes: Annotated[
            bool,
            typer.Option(
                "--yes",
                help="Approve in the same command, for scripted runs; only where "
                "llmship.yaml allows it (environments: ENV: allow_yes: true).",
            ),
        ] = False,
    ) -> None:
        """Promote a release into an environment (`--to`) from the one before it.

        The release must be the production release of the source environment and
        have passed the gates the target requires (`environments: ENV: require:`).
        Where the target wants an approval (prod by default) the request waits for
        `llmship approve ID` by another person; otherwise, and once approved, the
        target's rollout spec starts (`environments: ENV: rollout:`), or its
        production alias moves at once. Exit 2 on bad input (an unknown environment
        or release, a release that is not production in the source, --yes where not
        allowed), 1 when refused as things stand (gates missing, already
        production, a rollout running); nothing is moved or recorded then.
        """
        from llmship.environments import load_environments
        from llmship.pipeline.promotion import promote as run_promotion

        cfg = settings()
        envs = load_environments()
        with open_registry(cfg) as registry:
            promotion = run_promotion(
                registry,
                envs,
                ref,
                to=to,
                source=source,
                actor=cfg.actor,
                reason=reason or "",
                yes=yes,
            )
        typer.echo(promotion.message)
