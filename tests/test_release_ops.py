"""The release workflow as a function (``llmship.release.ops.release``) over a real
SQLite registry: the next version by what changed, the file written and registered,
the changelog entry on an injected day, the git tag, dry runs, and what it refuses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from _registry import spec_data
from llmship.errors import ConflictError
from llmship.registry import Registry
from llmship.release.bump import Bump
from llmship.release.ops import Outcome, ReleaseResult, read_spec, release

DAY = date(2026, 12, 1)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        yield reg


def write(path: Path, version: str = "1.0.0", system: str = "Be helpful.", **changes: Any) -> Path:
    path.write_text(
        yaml.safe_dump(spec_data("chat", version, prompt={"system": system}, **changes))
    )
    return path


def release_file(registry: Registry, path: Path, **options: Any) -> ReleaseResult:
    """``llmship release PATH`` as the CLI calls it, by ``ann`` on :data:`DAY`."""
    return release(registry, read_spec(path), path, actor="ann", today=DAY, **options)


def versions(registry: Registry) -> list[str]:
    return [r.version for r in registry.list_releases("chat")]


def test_a_first_release_takes_the_files_version(registry: Registry, tmp_path: Path) -> None:
    source = write(tmp_path / "chat.yaml", version="0.3.0")
    result = release_file(registry, source, reason="launch")
    assert result.outcome is Outcome.REGISTERED
    assert (result.previous, result.version, result.bump, result.ref) == (
        None,
        "0.3.0",
        None,
        "chat@0.3.0",
    )
    assert result.changes == ()
    assert result.file == tmp_path / "chat-0.3.0.yaml" and result.written
    header, _, body = result.file.read_text().partition("\n")
    assert header == "# chat@0.3.0, released by `llmship release` from chat.yaml (first release)."
    assert yaml.safe_load(body)["version"] == "0.3.0"
    assert versions(registry) == ["0.3.0"]
    assert result.changelog == tmp_path / "CHANGELOG.md"
    assert result.changelog.read_text() == (
        "# Releases\n\n## chat 0.3.0 (2026-12-01)\n\nFirst release, by ann: launch\n"
    )
    assert result.tag is None


def test_each_change_goes_up_by_what_it_is_worth(registry: Registry, tmp_path: Path) -> None:
    source = write(tmp_path / "chat.yaml")
    release_file(registry, source)
    same = release_file(registry, source)
    assert same.outcome is Outcome.UNCHANGED
    assert (same.previous_ref, same.version, same.file, same.changes) == (
        "chat@1.0.0",
        None,
        None,
        (),
    )
    write(source, version="9.9.9", system="Be brief.", params={"temperature": 0.2})
    minor = release_file(registry, source)
    assert (minor.previous, minor.version, minor.bump) == ("1.0.0", "1.1.0", Bump.MINOR)
    assert [(c.field, c.bump) for c in minor.changes] == [
        ("prompt.system", Bump.MINOR),
        ("params.temperature", Bump.PATCH),
    ]  # the largest bump first
    forced = write(source, system="Be kind.", params={"temperature": 0.2})
    major = release_file(registry, forced, bump=Bump.MAJOR)
    assert (major.version, major.bump, major.ref) == ("2.0.0", Bump.MAJOR, "chat@2.0.0")
    assert versions(registry) == ["2.0.0", "1.1.0", "1.0.0"]
    assert minor.changelog is not None
    headings = [line for line in minor.changelog.read_text().splitlines() if line[:3] == "## "]
    assert headings == [
        "## chat 2.0.0 (2026-12-01)",
        "## chat 1.1.0 (2026-12-01)",
        "## chat 1.0.0 (2026-12-01)",
    ]


def test_a_dry_run_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    source = write(tmp_path / "chat.yaml")
    release_file(registry, source, write_changelog=False)
    write(source, system="Be brief.")
    result = release_file(registry, source, dry_run=True)
    assert result.outcome is Outcome.DRY_RUN
    assert result.to_dict() == {
        "name": "chat",
        "previous": "1.0.0",
        "changes": [
            {
                "field": "prompt.system",
                "before": "Be helpful.",
                "after": "Be brief.",
                "bump": "minor",
            }
        ],
        "bump": "minor",
        "version": "1.1.0",
        "file": str(tmp_path / "chat-1.1.0.yaml"),
        "changelog": None,
        "tag": None,
        "written": False,
        "dry_run": True,
    }
    assert not (tmp_path / "chat-1.1.0.yaml").exists()
    assert not (tmp_path / "CHANGELOG.md").exists()
    assert versions(registry) == ["1.0.0"]


def test_a_released_file_is_never_rewritten(registry: Registry, tmp_path: Path) -> None:
    source = write(tmp_path / "chat.yaml")
    release_file(registry, source)
    write(source, system="Be brief.")
    taken = write(tmp_path / "chat-1.1.0.yaml", version="1.1.0", system="Other.")
    with pytest.raises(ConflictError, match="exists already with other content"):
        release_file(registry, source)
    assert versions(registry) == ["1.0.0"]
    assert "Other." in taken.read_text()


def test_the_file_already_written_is_registered_as_it_is(
    registry: Registry, tmp_path: Path
) -> None:
    source = write(tmp_path / "chat.yaml")
    first = release_file(registry, source, write_changelog=False)
    assert first.file is not None
    text = first.file.read_text()
    other = Registry.open(f"sqlite:///{tmp_path / 'other.db'}")
    with other:
        again = release_file(other, source, changelog=tmp_path / "docs.md")
        assert again.outcome is Outcome.REGISTERED and not again.written
        assert [r.version for r in other.list_releases("chat")] == ["1.0.0"]
    assert first.file.read_text() == text
    assert again.changelog == tmp_path / "docs.md" and again.changelog.exists()
    assert not (tmp_path / "CHANGELOG.md").exists()


def test_a_tag_is_made_in_the_repository_given(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{key}_NAME", "ann")
        monkeypatch.setenv(f"{key}_EMAIL", "ann@example.com")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    source = write(repo / "chat.yaml")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "chat"], cwd=repo, check=True)
    result = release_file(registry, source, tag=True, reason="launch", repo=repo)
    assert result.tag == "chat-v1.0.0"
    tags = subprocess.run(
        ["git", "tag", "-n"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert tags.stdout.split() == ["chat-v1.0.0", "chat@1.0.0:", "launch"]
    # outside a repository the tag fails, after the release is registered
    write(source, system="Be brief.")
    with pytest.raises(ConflictError, match=r"git tag chat-v1\.1\.0 failed"):
        release_file(registry, source, tag=True, repo=tmp_path)
    assert versions(registry) == ["1.1.0", "1.0.0"]
