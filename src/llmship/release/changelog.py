"""The releases' changelog: one Markdown entry per release, newest first."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from llmship.release.bump import Change

__all__ = ["TITLE", "add_entry", "entry"]

TITLE = "# Releases"


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def entry(
    ref_name: str,
    version: str,
    *,
    day: date,
    actor: str,
    previous: str | None,
    bump: str | None,
    changes: list[Change],
    reason: str | None = None,
) -> str:
    """The Markdown entry of one release: a heading, a line saying what it follows and
    who made it, and the changed fields with their bumps."""
    head = f"## {ref_name} {version} ({day.isoformat()})"
    if previous is None:
        summary = f"First release, by {actor}."
    else:
        summary = f"{(bump or 'patch').capitalize()} release after {previous}, by {actor}."
    if reason:
        summary = f"{summary.removesuffix('.')}: {reason}"
    lines = [head, "", summary]
    if changes:
        lines.append("")
        lines += [
            f"- {c.bump.value}: `{c.field}`: {_shown(c.before)} → {_shown(c.after)}"
            for c in changes
        ]
    return "\n".join(lines) + "\n"


def add_entry(path: Path, text: str) -> None:
    """Put ``text`` first under the file's ``# Releases`` title (the file and the title
    are created when missing); the older entries follow, untouched."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    rest = old[len(TITLE) :].lstrip("\n") if old.startswith(TITLE) else old
    body = f"{TITLE}\n\n{text}"
    if rest:
        body += f"\n{rest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
