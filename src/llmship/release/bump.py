"""What a change to a release is worth in semantic versioning, and the next version.

A release spec changes in one of three ways (MAJOR.MINOR.PATCH, as the seed asks):

- **major**: other weights or another model: ``backend`` or anything under ``model``
  (a new file, quantization, package, path, upstream model or weights sha256). The
  service's answers change wholesale.
- **minor**: the prompt (``prompt.*``: system prompt, template). Answers change in
  a way the release's owner chose.
- **patch**: generation parameters, runtime settings, labels, the description.

Pure functions: :func:`diff` lists the changed fields, :func:`required_bump` is the
largest bump they need, :func:`next_version` applies a bump.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from llmship.release.semver import Version
from llmship.release.spec import ReleaseSpec

__all__ = ["Bump", "Change", "diff", "next_version", "required_bump"]


class Bump(str, Enum):
    """A semantic-version increment, smallest first."""

    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"

    @property
    def rank(self) -> int:
        return list(Bump).index(self)


RULES: tuple[tuple[str, Bump], ...] = (
    ("backend", Bump.MAJOR),
    ("model", Bump.MAJOR),
    ("prompt", Bump.MINOR),
)
"""The first section of a field's dotted path -> its bump; anything else is a patch."""

IGNORED = ("name", "version")


@dataclass(frozen=True)
class Change:
    """One field that differs: its dotted path, the values, and the bump it needs."""

    field: str
    before: Any
    after: Any
    bump: Bump


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path; an empty mapping has none (like a missing one)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _bump_of(field: str) -> Bump:
    section = field.split(".", 1)[0]
    return next((bump for name, bump in RULES if name == section), Bump.PATCH)


def diff(old: ReleaseSpec, new: ReleaseSpec) -> list[Change]:
    """The fields of ``new`` that differ from ``old`` (name and version left out), in
    the order of the spec; a field only one side has compares against None."""
    before = {k: v for k, v in old.to_dict().items() if k not in IGNORED}
    after = {k: v for k, v in new.to_dict().items() if k not in IGNORED}
    flat_before, flat_after = _flatten(before), _flatten(after)
    fields = list(dict.fromkeys([*flat_after, *flat_before]))
    return [
        Change(f, flat_before.get(f), flat_after.get(f), _bump_of(f))
        for f in fields
        if flat_before.get(f) != flat_after.get(f)
    ]


def required_bump(changes: list[Change]) -> Bump | None:
    """The largest bump ``changes`` need; None when nothing changed."""
    return max((c.bump for c in changes), key=lambda b: b.rank, default=None)


def next_version(current: Version, bump: Bump) -> Version:
    """``current`` bumped. A pre-release goes to its release when that is enough
    (1.3.0-rc.1 + minor = 1.3.0, + patch = 1.3.0, + major = 2.0.0), as npm does."""
    major, minor, patch = current.major, current.minor, current.patch
    if current.prerelease and (
        bump is Bump.PATCH
        or (bump is Bump.MINOR and patch == 0)
        or (bump is Bump.MAJOR and minor == 0 and patch == 0)
    ):
        return Version(major, minor, patch)
    if bump is Bump.MAJOR:
        return Version(major + 1, 0, 0)
    if bump is Bump.MINOR:
        return Version(major, minor + 1, 0)
    return Version(major, minor, patch + 1)
