"""Semantic-version bumps of a changed release spec, and the releases' changelog."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from _registry import make_spec
from llmship.release.bump import Bump, Change, diff, next_version, required_bump
from llmship.release.changelog import add_entry, entry
from llmship.release.semver import Version

BASE: dict[str, Any] = {"prompt": {"system": "Be helpful."}, "params": {"temperature": 0.7}}


@pytest.mark.parametrize(
    ("changes", "fields", "bump"),
    [
        ({}, [], None),
        ({"description": "new words"}, ["description"], Bump.PATCH),
        ({"params": {"temperature": 0.2}}, ["params.temperature"], Bump.PATCH),
        ({"runtime": {"n_ctx": 4096}}, ["runtime.n_ctx"], Bump.PATCH),
        ({"labels": {"team": "search"}}, ["labels.team"], Bump.PATCH),
        ({"prompt": {"system": "Be brief."}}, ["prompt.system"], Bump.MINOR),
        (
            {"prompt": {"system": "Be brief."}, "params": {"temperature": 0.2}},
            ["prompt.system", "params.temperature"],
            Bump.MINOR,
        ),
        ({"model": {"base_url": "http://127.0.0.1:9/v1", "id": "big"}}, ["model.id"], Bump.MAJOR),
    ],
)
def test_what_changed_and_what_it_is_worth(
    changes: dict[str, Any], fields: list[str], bump: Bump | None
) -> None:
    old = make_spec(version="1.0.0", **BASE)
    new = make_spec(version="9.9.9", **(BASE | changes))  # the version itself never counts
    found = diff(old, new)
    assert [c.field for c in found] == fields
    assert required_bump(found) is bump


def test_a_change_of_weights_is_major() -> None:
    old = make_spec(
        backend="llamacpp", model={"path": "/models/a.gguf", "sha256": "a" * 64}, **BASE
    )
    new = make_spec(
        backend="llamacpp", model={"path": "/models/a.gguf", "sha256": "b" * 64}, **BASE
    )
    [change] = diff(old, new)
    assert (change.field, change.bump) == ("model.sha256", Bump.MAJOR)


@pytest.mark.parametrize(
    ("current", "bump", "expected"),
    [
        ("1.2.3", Bump.PATCH, "1.2.4"),
        ("1.2.3", Bump.MINOR, "1.3.0"),
        ("1.2.3", Bump.MAJOR, "2.0.0"),
        ("0.1.9", Bump.MINOR, "0.2.0"),
        ("1.3.0-rc.1", Bump.PATCH, "1.3.0"),
        ("1.3.0-rc.1", Bump.MINOR, "1.3.0"),
        ("1.3.0-rc.1", Bump.MAJOR, "2.0.0"),
        ("2.0.0-beta", Bump.MAJOR, "2.0.0"),
        ("1.3.1-rc.1", Bump.MINOR, "1.4.0"),
        ("1.2.3+build.7", Bump.PATCH, "1.2.4"),
    ],
)
def test_next_version(current: str, bump: Bump, expected: str) -> None:
    assert str(next_version(Version.parse(current), bump)) == expected


def test_changelog_entries_go_first_under_the_title(tmp_path: Path) -> None:
    path = tmp_path / "models" / "CHANGELOG.md"
    first = entry(
        "chat", "1.0.0", day=date(2026, 11, 29), actor="ann", previous=None, bump=None, changes=[]
    )
    add_entry(path, first)
    change = Change("prompt.system", "Be helpful.", "Be brief.", Bump.MINOR)
    second = entry(
        "chat",
        "1.1.0",
        day=date(2026, 11, 30),
        actor="bob",
        previous="1.0.0",
        bump="minor",
        changes=[change],
        reason="shorter answers",
    )
    add_entry(path, second)
    assert path.read_text() == (
        "# Releases\n\n"
        "## chat 1.1.0 (2026-11-30)\n\n"
        "Minor release after 1.0.0, by bob: shorter answers\n\n"
        '- minor: `prompt.system`: "Be helpful." → "Be brief."\n\n'
        "## chat 1.0.0 (2026-11-29)\n\n"
        "First release, by ann.\n"
    )


def test_a_changelog_without_the_title_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "CHANGELOG.md"
    path.write_text("Older notes.\n")
    add_entry(path, "## chat 2.0.0 (2026-11-29)\n")
    assert path.read_text() == "# Releases\n\n## chat 2.0.0 (2026-11-29)\n\nOlder notes.\n"
