"""``llmship release``: the next semantic version of a release spec, registered, with
a changelog entry and optionally a git tag. The workflow is
:func:`llmship.release.ops.release`; this module parses the options and prints."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmship.cli._common import handle_errors, open_registry, settings

if TYPE_CHECKING:
    from llmship.release.ops import ReleaseResult

__all__ = ["register"]


class BumpChoice(str, Enum):
    """`--bump`: from the changes, or forced."""

    auto = "auto"
    patch = "patch"
    minor = "minor"
    major = "major"


class Format(str, Enum):
    """Output of `llmship release`."""

    text = "text"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add ``release`` to the root command."""

    @app.command("release")
    @handle_errors
    def release(
        spec_path: Annotated[
            Path,
            typer.Argument(
                metavar="SPEC", help="The release spec as it should be now (YAML or JSON)."
            ),
        ],
        bump: Annotated[
            BumpChoice,
            typer.Option(
                "--bump",
                help="auto: the largest the changes need (model: major, prompt: minor, "
                "the rest: patch); or force one.",
            ),
        ] = BumpChoice.auto,
        reason: Annotated[
            str | None,
            typer.Option(
                "--reason", "-r", metavar="TEXT", help="Why (in the changelog entry and the tag)."
            ),
        ] = None,
        changelog: Annotated[
            Path | None,
            typer.Option(
                "--changelog",
                metavar="FILE",
                help="The releases' changelog (default: CHANGELOG.md next to SPEC).",
            ),
        ] = None,
        no_changelog: Annotated[
            bool, typer.Option("--no-changelog", help="Write no changelog entry.")
        ] = False,
        tag: Annotated[
            bool,
            typer.Option("--tag", help="Also create the git tag NAME-vVERSION at HEAD."),
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Say what would be released; change nothing."),
        ] = False,
        output: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = (
            Format.text
        ),
    ) -> None:
        """Release SPEC as the next version of its name.

        SPEC is compared with the newest registered version of its name. When they
        differ, the version goes up by what changed (or by --bump), the spec is
        written as NAME-VERSION.yaml next to SPEC and registered, and an entry goes
        to the changelog. The version written in SPEC is ignored, except for the
        first release of a name. Nothing changed: nothing is released (exit 0).
        """
        from llmship.release.bump import Bump
        from llmship.release.ops import read_spec
        from llmship.release.ops import release as release_spec

        cfg = settings()
        spec = read_spec(spec_path)
        with open_registry(cfg) as registry:
            result = release_spec(
                registry,
                spec,
                spec_path,
                actor=cfg.actor,
                bump=None if bump is BumpChoice.auto else Bump(bump.value),
                reason=reason,
                changelog=changelog,
                write_changelog=not no_changelog,
                tag=tag,
                dry_run=dry_run,
            )
        _report(output, result)


def _report(output: Format, result: ReleaseResult) -> None:
    from llmship.release.ops import Outcome

    if output is Format.json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    if result.outcome is Outcome.UNCHANGED:
        last = f"no change from {result.previous_ref}: nothing to release"
    elif result.outcome is Outcome.DRY_RUN:
        last = "dry run: nothing written"
    else:
        last = f"registered {result.ref}"
    if result.previous is None:
        typer.echo(f"{result.name}: first release, {result.version}")
    elif result.version is not None:
        bump = result.bump.value if result.bump is not None else None
        typer.echo(f"{result.name}: {result.previous} -> {result.version} ({bump})")
    for c in result.changes:
        typer.echo(f"  {c.bump.value:5s}  {c.field}: {c.before!r} -> {c.after!r}")
    if result.written:
        typer.echo(f"wrote {result.file}")
    typer.echo(last)
    if result.changelog:
        typer.echo(f"changelog: {result.changelog}")
    if result.tag:
        typer.echo(f"tagged {result.tag}")
