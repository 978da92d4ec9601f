"""What ``llmship release`` does, as a function over the registry: the next semantic
version of a release spec, registered, with a changelog entry and optionally a git
tag (the seed: every merge to main gets a new version tag and a changelog entry).

:func:`release` compares the spec with the newest registered version of its name;
when they differ, the version goes up by what changed (:func:`~llmship.release.bump.required_bump`)
or by a forced bump, the spec is written as ``NAME-VERSION.yaml`` next to its file and
registered, an entry goes to the changelog and, if asked, the git tag
``NAME-vVERSION`` is created. It prints nothing: the CLI (and any other caller)
renders the :class:`ReleaseResult`.

``release`` sits below ``registry`` (the registry stores release specs), so the
registry comes in as a :class:`ReleaseBook`, a protocol ``Registry`` satisfies.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmship.errors import ConflictError, InvalidRequestError
from llmship.release.bump import Bump, Change, diff, next_version, required_bump
from llmship.release.changelog import add_entry, entry
from llmship.release.semver import Version
from llmship.release.spec import ReleaseSpec, load_spec
from llmship.release.weights import with_sha256

if TYPE_CHECKING:
    from llmship.registry.records import ReleaseRecord

__all__ = ["Outcome", "ReleaseBook", "ReleaseResult", "git_tag", "read_spec", "release"]


class ReleaseBook(Protocol):
    """What a release reads and writes in the registry (``Registry`` has both)."""

    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]: ...

    def register(self, spec: ReleaseSpec, *, actor: str) -> tuple[ReleaseRecord, bool]: ...


class Outcome(str, Enum):
    """How a release ended."""

    UNCHANGED = "unchanged"
    """The spec equals the newest registered version: nothing released."""
    DRY_RUN = "dry_run"
    """The next version was worked out; nothing written."""
    REGISTERED = "registered"
    """The new version is registered (and its file, changelog entry and tag made)."""


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`release` found and did."""

    outcome: Outcome
    name: str
    previous: str | None
    """The newest registered version before, or None for a first release."""
    changes: tuple[Change, ...]
    """The fields that differ from ``previous``, each with the bump it needs."""
    bump: Bump | None = None
    """The bump applied (None for a first release or when nothing changed)."""
    version: str | None = None
    """The version released (or that would be, in a dry run)."""
    file: Path | None = None
    """``NAME-VERSION.yaml`` next to the spec's file."""
    written: bool = False
    """Whether ``file`` was written now (False when it held this release already)."""
    dry_run: bool = False
    ref: str | None = None
    """``NAME@VERSION`` as registered."""
    changelog: Path | None = None
    """The changelog the entry went to, if one was written."""
    tag: str | None = None
    """The git tag created, if one was."""

    @property
    def previous_ref(self) -> str | None:
        """``NAME@PREVIOUS``, or None for a first release."""
        return f"{self.name}@{self.previous}" if self.previous is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``llmship release --format json``."""
        return {
            "name": self.name,
            "previous": self.previous,
            "changes": [
                {"field": c.field, "before": c.before, "after": c.after, "bump": c.bump.value}
                for c in self.changes
            ],
            "bump": self.bump.value if self.bump is not None else None,
            "version": self.version,
            "file": str(self.file) if self.file is not None else None,
            "changelog": str(self.changelog) if self.changelog is not None else None,
            "tag": self.tag,
            "written": self.written,
            "dry_run": self.dry_run,
        }


def read_spec(path: Path) -> ReleaseSpec:
    """The release spec in ``path`` with its weights' sha256 filled (llamacpp only)."""
    return with_sha256(load_spec(path))


def release(
    registry: ReleaseBook,
    spec: ReleaseSpec,
    source: Path,
    *,
    actor: str,
    bump: Bump | None = None,
    reason: str | None = None,
    changelog: Path | None = None,
    write_changelog: bool = True,
    tag: bool = False,
    dry_run: bool = False,
    today: date | None = None,
    repo: Path | None = None,
) -> ReleaseResult:
    """Release ``spec`` (read from the file ``source``) as the next version of its name.

    The version written in ``spec`` counts only for the first release of a name;
    after that the version goes up by what changed, or by ``bump`` when given.
    Nothing changed: nothing is released (:attr:`Outcome.UNCHANGED`). The new
    version is written as ``NAME-VERSION.yaml`` next to ``source`` (a file there with
    other content is a ConflictError: a released version is never rewritten), and
    registered by ``actor``; then an entry goes to ``changelog`` (default:
    ``CHANGELOG.md`` next to ``source``) unless ``write_changelog`` is False, dated
    ``today`` (default: the UTC date now); with ``tag``, the annotated git tag
    ``NAME-vVERSION`` is created at HEAD of the repository around ``repo`` (default:
    the working directory). ``dry_run`` stops before anything is written.
    """
    known = registry.list_releases(spec.name)
    latest = known[0] if known else None
    changes = diff(latest.spec, spec) if latest is not None else []
    needed = required_bump(changes)
    found = ReleaseResult(
        Outcome.UNCHANGED,
        spec.name,
        latest.version if latest else None,
        tuple(changes),
        dry_run=dry_run,
    )
    if latest is not None and needed is None:
        return found
    chosen = needed if bump is None else bump
    if latest is None:
        version = spec.version
    else:
        version = str(next_version(Version.parse(latest.version), chosen or Bump.PATCH))
    new = spec.model_copy(update={"version": version})
    target = source.parent / f"{new.name}-{version}.yaml"
    applied = chosen if latest is not None and chosen else None
    planned = replace(found, bump=applied, version=version, file=target)
    if dry_run:
        return replace(planned, outcome=Outcome.DRY_RUN)
    same = target.exists() and read_spec(target).digest() == new.digest()
    if target.exists() and not same:
        raise ConflictError(
            f"{target} exists already with other content; a released version is never rewritten"
        )
    record, _ = registry.register(new, actor=actor)
    if not same:
        header = (
            f"# {new.ref}, released by `llmship release` from {source.name}"
            f" ({applied.value if applied else 'first release'}).\n"
        )
        target.write_text(header + new.to_yaml(), encoding="utf-8")
    done = replace(planned, outcome=Outcome.REGISTERED, written=not same, ref=record.ref)
    if write_changelog:
        path = changelog or source.parent / "CHANGELOG.md"
        add_entry(
            path,
            entry(
                new.name,
                version,
                day=today or datetime.now(timezone.utc).date(),
                actor=actor,
                previous=found.previous,
                bump=applied.value if applied else None,
                changes=changes,
                reason=reason,
            ),
        )
        done = replace(done, changelog=path)
    if tag:
        name = f"{new.name}-v{version}"
        git_tag(
            name, f"{record.ref}: {reason or 'released by llmship release'}", repo or Path.cwd()
        )
        done = replace(done, tag=name)
    return done


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
