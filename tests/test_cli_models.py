"""`llmship models` and `llmship alias` through the real command line (no model needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Run
from _registry import spec_data
from llmship.registry.records import NO_REASON


def spec_yaml(version: str = "1.0.0", name: str = "chat", **extra: Any) -> str:
    return yaml.safe_dump(spec_data(name, version, **extra), sort_keys=False)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], str]:
    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return _write


def test_register_then_again_is_idempotent(run: Run, write: Callable[[str, str], str]) -> None:
    path = write("chat.yaml", spec_yaml())
    first = run("models", "register", path)
    assert first.output.startswith("registered chat@1.0.0 (sha256 ")
    again = run("models", "register", path)
    assert again.output.strip() == "chat@1.0.0 already registered with identical content"


def test_llamacpp_spec_gets_the_weights_sha256_and_show_round_trips(
    run: Run, write: Callable[[str, str], str], tmp_path: Path
) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF" + b"\x00" * 4096)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    path = write(
        "local.yaml",
        yaml.safe_dump(
            {
                "name": "local",
                "version": "0.1.0",
                "backend": "llamacpp",
                "model": {"path": str(weights)},
                "params": {"temperature": 0.2},
            }
        ),
    )
    registered = run("models", "register", path)
    assert f"weights sha256 {digest[:12]}" in registered.output

    shown = run("models", "show", "local@0.1.0").output
    data = yaml.safe_load(shown)
    assert data["model"]["sha256"] == digest
    assert data["params"]["temperature"] == 0.2
    # What `show` prints is accepted back by `register`, as identical content.
    again = run("models", "register", write("shown.yaml", shown))
    assert "local@0.1.0 already registered with identical content" in again.output

    as_json = json.loads(run("models", "show", "local@0.1.0", "--format", "json").output)
    assert as_json == data


def test_bad_spec_field_is_named_and_exits_2(run: Run, write: Callable[[str, str], str]) -> None:
    typo = write("typo.yaml", spec_yaml(modle="x"))
    result = run("models", "register", typo, code=2)
    assert "modle: unknown field" in result.output
    hot = write("hot.yaml", spec_yaml(params={"temperature": 5}))
    result = run("models", "register", hot, code=2)
    assert "params.temperature" in result.output
    assert "Traceback" not in result.output
    missing = run("models", "register", "nope.yaml", code=2)
    assert "cannot read the file" in missing.output


def test_changed_content_is_a_conflict(run: Run, write: Callable[[str, str], str]) -> None:
    run("models", "register", write("a.yaml", spec_yaml()))
    changed = write("b.yaml", spec_yaml(description="changed"))
    result = run("models", "register", changed, code=2)
    assert "already registered with different content" in result.output
    assert "description" in result.output
    assert "bump the version" in result.output


def test_show_unknown_release_exits_2(run: Run, write: Callable[[str, str], str]) -> None:
    assert "the registry is empty" in run("models", "show", "chat@1.0.0", code=2).output
    run("models", "register", write("a.yaml", spec_yaml()))
    assert "known versions of chat: 1.0.0" in run("models", "show", "chat@2.0.0", code=2).output
    assert "nor an alias" in run("models", "show", "production", code=2).output


def test_list_shows_versions_newest_first_with_aliases(
    run: Run, write: Callable[[str, str], str]
) -> None:
    assert "no releases yet" in run("models", "list").output
    for version in ("1.0.0", "1.10.0", "1.9.0"):
        run("models", "register", write(f"{version}.yaml", spec_yaml(version)))
    run("models", "register", write("other.yaml", spec_yaml(name="alpha")))
    run("alias", "set", "production", "chat@1.9.0", "--reason", "launch")

    table = run("models", "list").output
    for text in ("chat", "alpha", "1.10.0", "1.9.0", "production", "openai", "tester"):
        assert text in table
    chat_rows = [line for line in table.splitlines() if "chat" in line]
    assert [row.split()[3] for row in chat_rows] == ["1.10.0", "1.9.0", "1.0.0"]

    rows = json.loads(run("models", "list", "--format", "json").output)
    assert [(r["name"], r["version"]) for r in rows] == [
        ("alpha", "1.0.0"),
        ("chat", "1.10.0"),
        ("chat", "1.9.0"),
        ("chat", "1.0.0"),
    ]
    assert rows[2]["aliases"] == ["production"]
    assert rows[0]["created_by"] == "tester"

    only = json.loads(run("models", "list", "--release", "alpha", "--format", "json").output)
    assert [r["version"] for r in only] == ["1.0.0"]
    one = json.loads(run("models", "list", "--release", "chat@1.9.0", "-f", "json").output)
    assert [(r["name"], r["version"]) for r in one] == [("chat", "1.9.0")]
    production = json.loads(run("models", "list", "--release", "production", "-f", "json").output)
    assert [(r["version"], r["aliases"]) for r in production] == [("1.9.0", ["production"])]
    unknown = run("models", "list", "--release", "nope", code=2).output
    assert "nor is it the name of a registered release" in unknown
    # the old spelling still works (without -n, which is --limit's), with a note on stderr
    note, _, rows = run("models", "list", "--name", "alpha", "-f", "json").output.partition("\n")
    assert note == "--name is deprecated: use --release"
    assert [r["version"] for r in json.loads(rows)] == ["1.0.0"]
    run("models", "list", "-n", "alpha", code=2)
    # Aliases of another environment are not shown.
    other_env = json.loads(run("models", "list", "--env", "prod", "--format", "json").output)
    assert all(r["aliases"] == [] for r in other_env)


def test_alias_set_list_history(run: Run, write: Callable[[str, str], str]) -> None:
    run("models", "register", write("a.yaml", spec_yaml("1.0.0")))
    run("models", "register", write("b.yaml", spec_yaml("1.1.0")))

    first = run("alias", "set", "production", "chat@1.0.0", "--reason", "launch")
    assert first.output.strip() == "production in dev: (none) -> chat@1.0.0"
    second = run("alias", "set", "production", "chat@1.1.0", "-r", "better answers")
    assert second.output.strip() == "production in dev: chat@1.0.0 -> chat@1.1.0"
    same = run("alias", "set", "production", "chat@1.1.0", "-r", "again")
    assert "already points at chat@1.1.0; nothing changed" in same.output
    back = run("alias", "set", "production", "chat@1.0.0", "-r", "rollback")
    assert back.output.strip() == "production in dev: chat@1.1.0 -> chat@1.0.0"

    listed = run("alias", "list").output
    assert "production" in listed
    assert "chat@1.0.0" in listed
    as_json = json.loads(run("alias", "list", "--format", "json").output)
    assert [(a["env"], a["alias"], a["ref"]) for a in as_json] == [
        ("dev", "production", "chat@1.0.0")
    ]

    history = json.loads(run("alias", "history", "production", "--format", "json").output)
    assert [(h["from"], h["to"], h["actor"], h["reason"]) for h in history] == [
        (None, "chat@1.0.0", "tester", "launch"),
        ("chat@1.0.0", "chat@1.1.0", "tester", "better answers"),
        ("chat@1.1.0", "chat@1.0.0", "tester", "rollback"),
    ]
    table = run("alias", "history", "production").output
    assert "rollback" in table
    assert "(none)" in table

    shown = yaml.safe_load(run("models", "show", "production").output)
    assert shown["version"] == "1.0.0"


def test_alias_set_without_a_reason(run: Run, write: Callable[[str, str], str]) -> None:
    run("models", "register", write("a.yaml", spec_yaml("1.0.0")))
    run("models", "register", write("b.yaml", spec_yaml("1.1.0")))
    run("alias", "set", "production", "chat@1.0.0")
    run("alias", "set", "staging", "chat@1.1.0", "--reason", " ")  # a blank one is none
    history = json.loads(run("alias", "history", "production", "-f", "json").output)
    assert [h["reason"] for h in history] == [NO_REASON]
    history = json.loads(run("alias", "history", "staging", "-f", "json").output)
    assert [h["reason"] for h in history] == [NO_REASON]


def test_alias_environments_and_errors(run: Run, write: Callable[[str, str], str]) -> None:
    run("models", "register", write("a.yaml", spec_yaml()))
    run("alias", "set", "canary", "chat@1.0.0", "--reason", "try", "--env", "staging")
    assert "no aliases in dev yet" in run("alias", "list").output
    assert "canary" in run("alias", "list", "--env", "staging").output

    bad = run("alias", "set", "Prod!", "chat@1.0.0", "--reason", "x", code=2)
    assert "not a valid alias name" in bad.output
    unknown = run("alias", "set", "production", "chat@9.0.0", "--reason", "x", code=2)
    assert "no release chat@9.0.0" in unknown.output
    no_history = run("alias", "history", "production", code=2)
    assert "no alias 'production' in dev" in no_history.output
    bad_env = run("alias", "list", "--env", "Nope", code=2)
    assert "invalid settings" in bad_env.output


@pytest.mark.parametrize(
    "command",
    [
        ["models"],
        ["models", "register"],
        ["models", "list"],
        ["models", "show"],
        ["alias"],
        ["alias", "set"],
        ["alias", "list"],
        ["alias", "history"],
        ["rollback"],
        ["init"],
        ["release"],
    ],
)
def test_every_command_has_help(run: Run, command: list[str]) -> None:
    result = run(*command, "--help")
    assert "Usage" in result.output
    assert len(result.output.strip().splitlines()) > 3
