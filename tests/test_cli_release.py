"""`llmship release` through the real command line: the next version by what changed,
the spec written and registered, the changelog, the git tag, and what it refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Run
from _registry import spec_data
from llmship.registry import Registry


def write_spec(path: Path, version: str = "1.0.0", **changes: Any) -> Path:
    data = spec_data("chat", version, prompt={"system": "Be helpful."}, **changes)
    path.write_text(yaml.safe_dump(data))
    return path


def releases(home: Path) -> list[str]:
    with Registry.open(f"sqlite:///{home / 'state' / 'registry.db'}") as registry:
        return [r.version for r in registry.list_releases("chat")]


def test_each_change_is_released_as_the_version_it_is_worth(run: Run, cli_home: Path) -> None:
    spec = write_spec(cli_home / "chat.yaml")
    # the first release takes the file's version
    first = run("release", str(spec)).output
    assert "chat: first release, 1.0.0" in first
    assert "registered chat@1.0.0" in first
    assert (cli_home / "chat-1.0.0.yaml").exists()
    # the same content again is no release at all
    same = run("release", str(spec)).output
    assert "no change from chat@1.0.0: nothing to release" in same
    # a new system prompt is a minor release (the version in the file is ignored)
    write_spec(spec, params={"temperature": 0.2}, version="7.7.7")
    spec.write_text(spec.read_text().replace("Be helpful.", "Be brief."))
    minor = run("release", str(spec), "-r", "shorter answers").output
    assert "chat: 1.0.0 -> 1.1.0 (minor)" in minor
    assert "minor  prompt.system: 'Be helpful.' -> 'Be brief.'" in minor
    assert "patch  params.temperature: 0.7 -> 0.2" in minor
    written = yaml.safe_load((cli_home / "chat-1.1.0.yaml").read_text())
    assert (written["version"], written["prompt"]["system"]) == ("1.1.0", "Be brief.")
    # another upstream model is a major release; --bump forces one
    data = yaml.safe_load(spec.read_text())
    data["model"]["id"] = "bigger"
    spec.write_text(yaml.safe_dump(data))
    assert "chat: 1.1.0 -> 2.0.0 (major)" in run("release", str(spec)).output
    data["description"] = "typo fixed"
    spec.write_text(yaml.safe_dump(data))
    assert "chat: 2.0.0 -> 2.1.0 (minor)" in run("release", str(spec), "--bump", "minor").output
    assert releases(cli_home) == ["2.1.0", "2.0.0", "1.1.0", "1.0.0"]
    changelog = (cli_home / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Releases\n\n## chat 2.1.0 (")
    assert "Minor release after 1.0.0, by tester: shorter answers" in changelog
    headings = [line for line in changelog.splitlines() if line.startswith("## ")]
    assert [h.split()[2] for h in headings] == ["2.1.0", "2.0.0", "1.1.0", "1.0.0"]


def test_dry_run_and_json_change_nothing(run: Run, cli_home: Path) -> None:
    spec = write_spec(cli_home / "chat.yaml")
    run("release", str(spec), "--no-changelog")
    spec.write_text(spec.read_text().replace("Be helpful.", "Be brief."))
    out = json.loads(run("release", str(spec), "--dry-run", "--format", "json").output)
    assert (out["previous"], out["version"], out["bump"], out["dry_run"]) == (
        "1.0.0",
        "1.1.0",
        "minor",
        True,
    )
    assert out["changes"] == [
        {"field": "prompt.system", "before": "Be helpful.", "after": "Be brief.", "bump": "minor"}
    ]
    assert not (cli_home / "chat-1.1.0.yaml").exists()
    assert not (cli_home / "CHANGELOG.md").exists()
    assert releases(cli_home) == ["1.0.0"]


def test_tag_creates_the_git_tag(run: Run, cli_home: Path) -> None:
    git = ["git", "-c", "user.name=ann", "-c", "user.email=ann@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=cli_home, check=True)
    spec = write_spec(cli_home / "chat.yaml")
    subprocess.run([*git, "add", "-A"], cwd=cli_home, check=True)
    subprocess.run([*git, "commit", "-qm", "chat"], cwd=cli_home, check=True)
    run("release", str(spec))
    spec.write_text(spec.read_text().replace("Be helpful.", "Be brief."))
    env_git = {"GIT_COMMITTER_NAME": "ann", "GIT_COMMITTER_EMAIL": "ann@example.com"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env_git.items():
            mp.setenv(key, value)
        out = run("release", str(spec), "--tag", "-r", "shorter").output
    assert "tagged chat-v1.1.0" in out
    tags = subprocess.run(
        ["git", "tag", "-n"], cwd=cli_home, capture_output=True, text=True, check=True
    )
    assert "chat-v1.1.0" in tags.stdout
    assert "chat@1.1.0: shorter" in tags.stdout


def test_what_release_refuses(run: Run, cli_home: Path) -> None:
    spec = write_spec(cli_home / "chat.yaml")
    assert "cannot read the file" in run("release", "missing.yaml", code=2).output
    run("release", str(spec))
    spec.write_text(spec.read_text().replace("Be helpful.", "Be brief."))
    (cli_home / "chat-1.1.0.yaml").write_text(yaml.safe_dump(spec_data("chat", "1.1.0")))
    taken = run("release", str(spec), code=2).output
    assert "exists already with other content" in taken
    (cli_home / "chat-1.1.0.yaml").unlink()
    outside = run("release", str(spec), "--tag", code=2).output  # not a git repository
    assert "git tag chat-v1.1.0 failed" in outside
