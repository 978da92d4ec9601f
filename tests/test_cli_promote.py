"""``llmship promote``, ``approvals list``, ``approve`` and ``reject`` through the real
command line; the reason each environment requires of ``traffic set`` and ``alias
set``; each environment's gateway port; and every command of docs/environments.md,
run as written there."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from _cli import Run
from _procs import LlmshipProcess, free_port
from _registry import chat_registry
from llmship.cli import app
from llmship.cli._common import with_env_port
from llmship.registry import Registry
from llmship.settings import load_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "environments.md"
NEW, OLD = "chat@1.1.0", "chat@1.0.0"
CONFIG = {
    "environments": {
        "dev": {},
        "staging": {"require": ["eval"]},
        "prod": {"require": ["eval", "loadtest"], "approval": True},
    }
}


@pytest.fixture
def registry(cli_home: Path) -> Iterator[Registry]:
    """The CLI's registry: chat@1.0.0 production in dev, staging and prod; chat@1.1.0
    with passing eval and load-test runs."""
    with chat_registry(cli_home / "state" / "registry.db") as reg:
        for env in ("staging", "prod"):
            reg.set_alias(env, "production", OLD, actor="ci", reason="launch")
        for kind in ("eval", "loadtest"):
            reg.record_gate_run(
                kind, NEW, env="staging", passed=True, summary={}, report={}, actor="ci"
            )
        yield reg


def configure(cli_home: Path, config: dict[str, Any]) -> None:
    (cli_home / "llmship.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def production(registry: Registry, env: str = "prod") -> str | None:
    record = registry.get_alias(env, "production")
    return record.ref if record is not None else None


def as_(actor: str, *args: str, code: int = 0) -> str:
    """``llmship ARGS`` run by ``actor``; its output, the exit status checked."""
    result = CliRunner().invoke(app, list(args), env={"LLMSHIP_ACTOR": actor})
    assert result.exit_code == code, result.output
    return result.output


# -- promote, approve, reject -------------------------------------------------------------


def test_promote_waits_for_approval_and_approve_carries_it_out(
    cli_home: Path, registry: Registry
) -> None:
    configure(cli_home, CONFIG)
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    out = as_("alice", "promote", NEW, "--to", "prod", "-r", "better")
    assert "waiting for approval 1" in out and "llmship approve 1" in out
    listed = json.loads(as_("bob", "approvals", "list", "--state", "pending", "--format", "json"))
    assert [(a["id"], a["ref"], a["requested_by"], a["request_reason"]) for a in listed] == [
        (1, NEW, "alice", "better")
    ]
    out = as_("bob", "approve", "1", "--reason", "ok")
    assert "chat@1.1.0 is now the production release of prod (approval 1)" in out
    assert production(registry) == NEW
    [decided] = json.loads(as_("bob", "approvals", "list", "--env", "prod", "-f", "json"))
    assert (decided["state"], decided["decided_by"], decided["decision_reason"]) == (
        "approved",
        "bob",
        "ok",
    )
    assert "approvals" in as_("bob", "approvals", "list")  # the table


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("promote", OLD, "--to", "prod"), 2, "is not the production release of staging"),
        (("promote", NEW, "--to", "qa"), 2, "no environment 'qa' in llmship.yaml"),
        (("promote", NEW, "--to", "prod", "--from", "qa"), 2, "no environment 'qa'"),
        (("promote", NEW, "--to", "dev"), 2, "dev is the first environment"),
        (("promote", "chat@9.0.0", "--to", "prod"), 2, "chat@9.0.0"),
        (("promote", NEW, "--to", "prod", "--yes"), 2, "--yes is not allowed for prod"),
        (("approve", "3"), 2, "no approval 3"),
        (("reject", "3", "-r", "no"), 2, "no approval 3"),
        (("approvals", "list", "--state", "done"), 2, "'done' is not one of"),
        (("promote", OLD, "--to", "prod", "--from", "dev"), 1, "already the production release"),
    ],
)
def test_bad_input_changes_nothing(
    cli_home: Path, registry: Registry, args: tuple[str, ...], code: int, message: str
) -> None:
    configure(cli_home, CONFIG)
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    out = as_("alice", *args, code=code)
    assert message in out, out
    assert production(registry) == OLD and registry.list_approvals() == []


def test_a_missing_gate_is_refused_with_exit_1(cli_home: Path, registry: Registry) -> None:
    configure(cli_home, CONFIG)
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    registry.record_gate_run(
        "loadtest", NEW, env="staging", passed=False, summary={}, report={}, actor="ci"
    )
    out = as_("alice", "promote", NEW, "--to", "prod", code=1)
    assert "loadtest: run 3 failed" in out and "llmship loadtest --release chat@1.1.0" in out
    assert registry.list_approvals() == [] and production(registry) == OLD


def test_decided_and_self_approvals_are_refused_with_exit_1(
    cli_home: Path, registry: Registry
) -> None:
    configure(cli_home, CONFIG)
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    as_("alice", "promote", NEW, "--to", "prod")
    assert "alice asked for this promotion" in as_("alice", "approve", "1", code=1)
    assert "needs --reason" in as_("bob", "reject", "1", code=2)
    out = as_("bob", "reject", "1", "--reason", "not today")
    assert "approval 1 rejected: chat@1.1.0 stays out of prod (not today)" in out
    assert "already rejected by bob" in as_("carol", "approve", "1", code=1)
    assert "already rejected by bob" in as_("carol", "reject", "1", "-r", "x", code=1)
    assert production(registry) == OLD
    assert registry.get_approval(1).state == "rejected"


def test_yes_where_allowed_and_self_approval_where_configured(
    cli_home: Path, registry: Registry
) -> None:
    prod = {"approval": True, "allow_yes": True, "self_approval": True}
    configure(cli_home, {"environments": {"staging": {}, "prod": prod}})
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    out = as_("ci", "promote", NEW, "--to", "prod", "--yes")
    assert "now the production release of prod (approval 1)" in out
    record = registry.get_approval(1)
    assert (record.requested_by, record.decided_by, record.decision_reason) == (
        "ci",
        "ci",
        "--yes",
    )
    # the requester may approve their own request here
    registry.set_alias("staging", "production", OLD, actor="ci", reason="back")
    as_("alice", "promote", OLD, "--to", "prod")
    as_("alice", "approve", "2")
    assert production(registry) == OLD


def test_a_promotion_into_an_environment_with_a_rollout_starts_it(
    cli_home: Path, registry: Registry
) -> None:
    spec = {"name": "quick", "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}
    (cli_home / "rollouts").mkdir()
    (cli_home / "rollouts" / "quick.yaml").write_text(yaml.safe_dump(spec))
    configure(
        cli_home, {"environments": {"staging": {}, "prod": {"rollout": "rollouts/quick.yaml"}}}
    )
    registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
    out = as_("alice", "promote", NEW, "--to", "prod")
    assert "rollout quick (id 1) of chat@1.1.0 started in prod: canary from chat@1.0.0" in out
    rollout = registry.active_rollout("prod")
    assert rollout is not None and rollout.candidate == NEW


# -- reasons per environment ---------------------------------------------------------------


def revision(registry: Registry, env: str) -> int:
    return registry.get_traffic(env).revision


@pytest.mark.parametrize(
    "args",
    [
        ("traffic", "set", "--shadow", NEW, "--percent", "5"),
        ("traffic", "set", "--reset", "--reason", "  "),  # a blank reason is none
        ("alias", "set", "canary", NEW),
        ("alias", "set", "production", NEW),
    ],
)
def test_prod_requires_a_reason_and_dev_does_not(
    run: Run, registry: Registry, args: tuple[str, ...]
) -> None:
    # In prod (no llmship.yaml: the defaults), a change without a reason is refused
    out = run(*args, "--env", "prod", code=2).output
    assert "in prod needs --reason TEXT" in out
    assert revision(registry, "prod") == 0 and registry.get_alias("prod", "canary") is None
    assert production(registry) == OLD
    # In dev it goes through, recorded as "no reason given"
    run(*args, "--env", "dev")
    assert registry.events(limit=1)[0].data["reason"] == "no reason given"
    # And in prod with a reason
    run(*args, "--env", "prod", "--reason", "checked")


def test_the_reason_rule_is_configured_per_environment(
    cli_home: Path, run: Run, registry: Registry
) -> None:
    configure(
        cli_home, {"environments": {"dev": {"reason": "required"}, "prod": {"reason": "optional"}}}
    )
    run("alias", "set", "canary", NEW, "--env", "prod")
    out = run("alias", "set", "canary", NEW, "--env", "dev", code=2).output
    assert "moving an alias in dev needs --reason TEXT" in out
    assert registry.get_alias("dev", "canary") is None
    # an environment the section does not declare needs one only if named prod/production
    run("traffic", "set", "--shadow", NEW, "--percent", "1", "--env", "qa")
    run("traffic", "set", "--shadow", NEW, "--percent", "1", "--env", "production", code=2)


# -- gateway ports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "set_by", "port"),
    [
        ("dev", {}, 8080),
        ("staging", {}, 8081),
        ("prod", {}, 8082),
        ("test", {}, 8080),  # undeclared: the setting's default
        ("prod", {"LLMSHIP_GATEWAY_PORT": "9000"}, 9000),
        ("prod", {"config": 9100}, 9100),
        ("prod", {"option": 9200}, 9200),
    ],
)
def test_the_gateway_port_of_an_environment(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch, env: str, set_by: dict[str, Any], port: int
) -> None:
    monkeypatch.delenv("LLMSHIP_GATEWAY_PORT", raising=False)
    if "LLMSHIP_GATEWAY_PORT" in set_by:
        monkeypatch.setenv("LLMSHIP_GATEWAY_PORT", set_by["LLMSHIP_GATEWAY_PORT"])
    if "config" in set_by:
        configure(cli_home, {"gateway_port": set_by["config"]})
    overrides = {"gateway_port": set_by["option"]} if "option" in set_by else {}
    assert with_env_port(load_settings(env=env, **overrides)).gateway_port == port


@pytest.mark.slow
def test_llmship_gateway_listens_on_its_environments_port(cli_home: Path) -> None:
    # Given staging's gateway_port in llmship.yaml (a free one here)
    port = free_port()
    configure(cli_home, {"environments": {"staging": {"gateway_port": port}}})
    env = {k: v for k, v in os.environ.items() if k != "LLMSHIP_GATEWAY_PORT"}
    # When `llmship gateway --env staging` starts, as docs/environments.md shows it
    [command] = [c for c, _, _ in doc_commands() if c[:1] == ["gateway"]]
    gateway = LlmshipProcess(command, cli_home, env={**env, "LLMSHIP_HOME": str(cli_home)})
    try:
        # Then it answers on that port
        gateway.wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        assert f"gateway of env staging at http://127.0.0.1:{port}" in gateway.output()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        gateway.stop()


# -- docs/environments.md -----------------------------------------------------------------


def doc_files() -> dict[str, str]:
    """The files docs/environments.md shows: yaml blocks whose first line is ``# PATH``."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    return {body.splitlines()[0][2:].strip(): body for body in blocks if body.startswith("# ")}


def doc_commands() -> list[tuple[list[str], dict[str, str], list[str]]]:
    """Each ``$ llmship ...`` line of the page's console blocks: its arguments, the
    variables set before it, and the output lines shown under it."""
    commands: list[tuple[list[str], dict[str, str], list[str]]] = []
    blocks = re.findall(r"^```console\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    for block in blocks:
        for line in block.splitlines():
            if line.startswith("$ "):
                words = shlex.split(line[2:])
                env = {}
                while "=" in words[0]:
                    name, _, value = words.pop(0).partition("=")
                    env[name] = value
                assert words[0] == "llmship", line
                commands.append((words[1:], env, []))
            else:
                commands[-1][2].append(line)
    return commands


def test_the_pages_commands_run_as_written(
    cli_home: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the page's llmship.yaml and rollout spec, and its story: chat@1.0.0
    # production everywhere (the fixture), chat@1.1.0 with passing gates; alice at work
    for name, text in doc_files().items():
        (cli_home / name).parent.mkdir(parents=True, exist_ok=True)
        (cli_home / name).write_text(text)
    monkeypatch.setenv("LLMSHIP_ACTOR", "alice")
    runner = CliRunner()
    ran = 0
    for args, env, shown in doc_commands():
        if args[0] in ("gateway", "up"):  # long-running: see the gateway test above
            continue
        result = runner.invoke(app, args, env=env)
        failing = bool(shown) and shown[0].startswith("error:")
        assert (result.exit_code != 0) == failing, (args, result.output)
        for line in shown:
            pattern = ".*".join(re.escape(part) for part in line.split("..."))
            assert re.search(pattern, result.output), (args, line, result.output)
        ran += 1
    assert ran >= 15
    # Then the story ended as the page says: a canary of chat@1.1.0 in prod
    rollout = registry.active_rollout("prod")
    assert rollout is not None and (rollout.candidate, rollout.name) == (NEW, "canary")
    assert [a.state for a in registry.list_approvals()] == ["approved", "rejected"]
    assert production(registry, "staging") == NEW and production(registry) == OLD
