"""``llmship release``: the next semantic version of a release spec, registered, with
a changelog entry and optionally a git tag (the seed: every merge to main gets a new
version tag and a changelog entry)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from llmship.cli._common import handle_errors, open_registry, settings
from llmship.errors import ConflictError, InvalidRequestError

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


def git_tag(tag: str, message: str, cwd: Path) -> None:
    """Create the annotated tag ``tag`` at HEAD of the git repository around ``cwd``."""
    try:
        done = subprocess.run(
            ["git", "tag", "-a", tag, "-m", message],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise InvalidRequestError("--tag needs git, and git is not installed") from None
    if done.returncode != 0:
        problem = done.stderr.strip() or done.stdout.strip()
        raise ConflictError(f"git tag {tag} failed: {problem}")


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
        from llmship.release.bump import Bump, diff, next_version, required_bump
        from llmship.release.changelog import add_entry, entry
        from llmship.release.semver import Version
        from llmship.release.spec import load_spec
        from llmship.release.weights import with_sha256

        cfg = settings()
        spec = with_sha256(load_spec(spec_path))
        with open_registry(cfg) as registry:
            known = registry.list_releases(spec.name)
            latest = known[0] if known else None
            changes = diff(latest.spec, spec) if latest is not None else []
            needed = required_bump(changes)
            result: dict[str, Any] = {
                "name": spec.name,
                "previous": latest.version if latest else None,
                "changes": [
                    {"field": c.field, "before": c.before, "after": c.after, "bump": c.bump.value}
                    for c in changes
                ],
                "bump": None,
                "version": None,
                "file": None,
                "changelog": None,
                "tag": None,
                "written": False,
                "dry_run": dry_run,
            }
            if latest is not None and needed is None:
                _report(output, result, f"no change from {latest.ref}: nothing to release")
                return
            chosen = needed if bump is BumpChoice.auto else Bump(bump.value)
            if latest is None:
                version = spec.version
            else:
                version = str(next_version(Version.parse(latest.version), chosen or Bump.PATCH))
            new = spec.model_copy(update={"version": version})
            target = spec_path.parent / f"{new.name}-{version}.yaml"
            result |= {
                "bump": chosen.value if latest is not None and chosen else None,
                "version": version,
                "file": str(target),
            }
            if dry_run:
                _report(output, result, "dry run: nothing written")
                return
            same = target.exists() and with_sha256(load_spec(target)).digest() == new.digest()
            if target.exists() and not same:
                raise ConflictError(
                    f"{target} exists already with other content; a released version is "
                    "never rewritten"
                )
            record, _ = registry.register(new, actor=cfg.actor)
            result["written"] = not same
            if not same:
                header = (
                    f"# {new.ref}, released by `llmship release` from {spec_path.name}"
                    f" ({result['bump'] or 'first release'}).\n"
                )
                target.write_text(header + new.to_yaml(), encoding="utf-8")
        if not no_changelog:
            path = changelog or spec_path.parent / "CHANGELOG.md"
            add_entry(
                path,
                entry(
                    new.name,
                    version,
                    day=datetime.now(timezone.utc).date(),
                    actor=cfg.actor,
                    previous=latest.version if latest else None,
                    bump=result["bump"],
                    changes=changes,
                    reason=reason,
                ),
            )
            result["changelog"] = str(path)
        if tag:
            name = f"{new.name}-v{version}"
            git_tag(name, f"{record.ref}: {reason or 'released by llmship release'}", Path.cwd())
            result["tag"] = name
        _report(output, result, f"registered {record.ref}")


def _report(output: Format, result: dict[str, Any], last: str) -> None:
    if output is Format.json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if result["previous"] is None:
        typer.echo(f"{result['name']}: first release, {result['version']}")
    elif result["version"] is not None:
        typer.echo(
            f"{result['name']}: {result['previous']} -> {result['version']} ({result['bump']})"
        )
    for c in result["changes"]:
        typer.echo(f"  {c['bump']:5s}  {c['field']}: {c['before']!r} -> {c['after']!r}")
    if result["written"]:
        typer.echo(f"wrote {result['file']}")
    typer.echo(last)
    if result["changelog"]:
        typer.echo(f"changelog: {result['changelog']}")
    if result["tag"]:
        typer.echo(f"tagged {result['tag']}")
