"""`llmship rollout` and `llmship controller` through the real command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Run, cli_runner
from _registry import chat_registry
from llmship.registry import Registry
from llmship.registry.records import NO_REASON

SPEC = {
    "name": "cli-canary",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {}},
                {"setWeight": 60},
                {"pause": {}},
                {"setWeight": 80},
                {"pause": {}},
            ]
        }
    },
}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0 (production in dev), 1.1.0 with a live model server, and 2.0.0."""
    with chat_registry(tmp_path / "state" / "registry.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        reg.register_endpoint("dev", "chat@1.1.0", "http://127.0.0.1:8101", pid=1)
        yield reg


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "rollouts" / "cli-canary.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture
def run(cli_home: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run `llmship ...` in conftest's clean ``cli_home``, over the registry above."""
    monkeypatch.setenv("LLMSHIP_GATEWAY_PORT", "9")  # nothing listens: no statistics
    return cli_runner()


def error(run: Run, *args: str) -> str:
    """The one red line a failing command prints (exit status 2)."""
    result = run(*args, code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    return lines[0].removeprefix("error: ")


def status(run: Run, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run("rollout", "status", *args, "--format", "json").output)
    return data


def test_start_then_the_controller_runs_it(run: Run, spec_file: Path, registry: Registry) -> None:
    out = run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0", "-r", "JIRA-7")
    assert "rollout cli-canary (id 1) of chat@1.1.0 in dev: canary from chat@1.0.0" in out.output
    assert "the controller of `llmship up` picks it up" in out.output
    assert "without `llmship up`, run `llmship controller --env dev`" in out.output
    assert status(run)["phase"] == "Pending"
    run("controller", "--once")
    data = status(run)
    assert (data["phase"], data["step"], data["weight"]) == (
        "Paused",
        "step 2/6: pause until promoted",
        20.0,
    )
    assert data["weights"] == {"stable": 80.0, "canary": 20.0}
    assert registry.get_traffic("dev").canary_weight == 20.0
    table = run("rollout", "status").output
    for text in ("canary", "Paused", "stable 80%, canary 20%", "chat@1.1.0", "CanaryPauseStep"):
        assert text in table


def test_promote_pause_resume_abort_retry_are_applied_by_the_controller(
    run: Run, spec_file: Path, registry: Registry
) -> None:
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    run("controller", "--once")
    out = run("rollout", "promote", "cli-canary", "--reason", "dashboards look fine")
    assert "promote of rollout cli-canary (id 1) requested" in out.output
    run("controller", "--once")
    assert registry.get_traffic("dev").canary_weight == 60.0
    run("rollout", "pause", "1", "-r", "lunch")
    assert "is already paused" in error(run, "rollout", "pause")  # the first is still waiting
    run("controller", "--once")
    run("rollout", "resume")
    run("controller", "--once")
    # one resume lifts the person's pause and ends the `pause: {}` step it was in
    assert (status(run)["phase"], registry.get_traffic("dev").canary_weight) == ("Paused", 80.0)
    run("rollout", "abort", "--reason", "bad answers")
    run("controller", "--once")
    data = status(run)
    assert (data["phase"], data["abort_reason"]) == ("Aborted", "bad answers")
    assert registry.get_traffic("dev").canary is None
    assert "Aborted: nothing to promote" not in error(run, "rollout", "resume")
    run("rollout", "retry")
    run("controller", "--once")
    assert status(run)["phase"] == "Paused"
    assert status(run)["attempt"] == 2
    run("rollout", "promote", "--full")
    run("controller", "--once")
    assert status(run)["phase"] == "Healthy"
    assert registry.get_alias("dev", "production").ref == "chat@1.1.0"  # type: ignore[union-attr]
    history = run("rollout", "history", "--format", "json").output
    kinds = [e["kind"] for e in json.loads(history)]
    for kind in ("rollout.created", "rollout.started", "rollout.aborted", "rollout.retried"):
        assert kind in kinds
    assert kinds[-1] == "rollout.promoted"
    assert "promoted chat@1.1.0" in run("rollout", "history").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "chat@9.9.9"], "no release chat@9.9.9; known versions of chat"),
        (["--candidate", "chat"], "'chat' is neither NAME@VERSION nor an alias in environment"),
        (["--candidate", "chat@1.0.0"], "chat@1.0.0 is already the production release of dev"),
        (["--candidate", "chat@1.1.0", "--env", "prod"], "prod has no production release"),
    ],
)
def test_start_refuses_at_once(run: Run, spec_file: Path, args: list[str], message: str) -> None:
    assert message in error(run, "rollout", "start", str(spec_file), *args)


def test_rollout_commands_without_a_reason(run: Run, spec_file: Path, registry: Registry) -> None:
    # Given a candidate named by an alias, as `eval --candidate` takes it
    registry.set_alias("dev", "staging", "chat@1.1.0", actor="ci", reason="stage it")
    out = run("rollout", "start", str(spec_file), "--candidate", "staging").output
    assert "rollout cli-canary (id 1) of chat@1.1.0 in dev" in out
    # When every command runs without --reason
    run("controller", "--once")
    for command in ("pause", "resume", "abort", "retry"):
        run("rollout", command)
        run("controller", "--once")
    run("rollout", "promote", "--full")
    run("controller", "--once")
    # Then each of their events says so
    events = json.loads(run("rollout", "history", "--format", "json").output)
    said = {e["kind"] for e in events if NO_REASON in e["message"]}
    for kind in ("created", "paused", "resumed", "aborted", "retried", "promoted"):
        assert f"rollout.{kind}" in said, events
    assert registry.get_alias("dev", "production").ref == "chat@1.1.0"  # type: ignore[union-attr]
    run("rollout", "undo")
    assert registry.alias_history("dev", "production")[-1].reason == f"rollout undo: {NO_REASON}"


def test_start_refuses_an_invalid_spec(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"name": "x", "strategy": {"canary": {"steps": [{"pause": {"seconds": 3}}]}}}
        )
    )
    message = error(run, "rollout", "start", str(bad), "--candidate", "chat@1.1.0")
    assert (
        "strategy.canary.steps[0].pause.seconds: unknown field; allowed here: duration" in message
    )
    missing = error(run, "rollout", "start", "nope.yaml", "--candidate", "chat@1.1.0")
    assert "cannot read the file" in missing


def test_one_rollout_at_a_time(run: Run, spec_file: Path) -> None:
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    message = error(run, "rollout", "start", str(spec_file), "--candidate", "chat@2.0.0")
    assert "rollout cli-canary (id 1) of chat@1.1.0 is Pending in dev: one rollout runs" in message


def test_commands_that_do_not_apply_say_why(run: Run, spec_file: Path) -> None:
    assert "no rollout in dev yet" in error(run, "rollout", "promote")
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    assert "is not paused" in error(run, "rollout", "resume")
    assert "only an Aborted rollout can be retried" in error(run, "rollout", "retry")
    assert "no rollout named 'other' in dev" in error(run, "rollout", "abort", "other")
    assert "no rollout with id 42 in dev" in error(run, "rollout", "status", "42")


def test_list_and_history(run: Run, spec_file: Path) -> None:
    assert "no rollouts in dev yet" in run("rollout", "list").output
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    run("controller", "--once")
    rows = json.loads(run("rollout", "list", "--format", "json").output)
    assert [(r["id"], r["name"], r["phase"], r["active"]) for r in rows] == [
        (1, "cli-canary", "Paused", True)
    ]
    table = run("rollout", "list", "--limit", "5").output
    assert "cli-canary" in table and "Paused" in table
    history = run("rollout", "history", "1").output
    assert "setWeight 20" in history


def test_undo_moves_production_back(run: Run, spec_file: Path, registry: Registry) -> None:
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    assert "abort it instead" in error(run, "rollout", "undo")
    run("rollout", "promote", "--full")
    run("controller", "--once")
    out = run("rollout", "undo", "--reason", "users complain")
    assert "production in dev: chat@1.1.0 -> chat@1.0.0" in out.output
    move = registry.alias_history("dev", "production")[-1]
    assert (move.actor, move.reason) == ("tester", "rollout undo: users complain")
    again = run("rollout", "undo")  # undo of an undo goes forward again, as in Argo
    assert "production in dev: chat@1.0.0 -> chat@1.1.0" in again.output


def test_undo_without_an_earlier_release(run: Run) -> None:
    assert "production in dev has no earlier release than chat@1.0.0" in error(
        run, "rollout", "undo"
    )
    assert "staging has no production release" in error(run, "rollout", "undo", "--env", "staging")


def test_rollback_goes_back_toggles_and_takes_an_older_release(
    run: Run, registry: Registry, tmp_path: Path
) -> None:
    # Given production moved 1.0.0 -> 1.1.0 -> 2.0.0, and gates that 1.0.0 never passed
    registry.set_alias("dev", "production", "chat@1.1.0", actor="ci", reason="v1.1")
    registry.set_alias("dev", "production", "chat@2.0.0", actor="ci", reason="v2")
    (tmp_path / "llmship.yaml").write_text(
        yaml.safe_dump({"gates": {"require": {"dev": ["eval"]}}})
    )
    # When a person rolls back, production goes to where it was before, without gates
    out = run("rollback", "--reason", "answers got worse").output
    assert out.strip() == "production in dev: chat@2.0.0 -> chat@1.1.0 (rolled back)"
    move = registry.alias_history("dev", "production")[-1]
    assert (move.actor, move.reason) == ("tester", "rollback: answers got worse")
    # and a second rollback returns to where the first started, as helm rollback does
    again = run("rollback").output
    assert "chat@1.1.0 -> chat@2.0.0 (rolled back)" in again
    assert registry.alias_history("dev", "production")[-1].reason == f"rollback: {NO_REASON}"
    # --to takes any release production served before
    assert "chat@2.0.0 -> chat@1.0.0" in run("rollback", "--to", "chat@1.0.0").output


def test_rollback_refuses_what_is_not_a_rollback(run: Run, spec_file: Path) -> None:
    assert "production in dev has no earlier release than chat@1.0.0" in error(run, "rollback")
    assert "staging has no production release" in error(run, "rollback", "--env", "staging")
    assert "no canary release" in error(run, "rollback", "--alias", "canary")
    never = error(run, "rollback", "--to", "chat@2.0.0")
    assert "production in dev never pointed at chat@2.0.0" in never
    assert "llmship alias set production chat@2.0.0" in never
    assert "no release chat@9.0.0" in error(run, "rollback", "--to", "chat@9.0.0")
    # during a rollout too, checked before the rollout is aborted: nothing changes
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    assert "no earlier release than chat@1.0.0" in error(run, "rollback")
    assert status(run)["phase"] == "Pending"


def test_rollback_during_a_rollout_aborts_it_first(
    run: Run, spec_file: Path, registry: Registry
) -> None:
    # Given production moved 1.0.0 -> 2.0.0, and a canary of 1.1.0 at 20% (issue #13:
    # rollback used to refuse here, saying "abort it instead")
    registry.set_alias("dev", "production", "chat@2.0.0", actor="ci", reason="v2")
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    run("controller", "--once")
    assert status(run)["weight"] == 20
    # When a person rolls back, with no controller running
    out = run("rollback", "--reason", "2.0.0 is bad").output
    # Then the rollout is aborted first (by them, applied under the controller's lease),
    # all traffic on stable, and production goes back to the release before stable
    assert (
        "aborted rollout cli-canary (id 1) of chat@1.1.0 in dev: all traffic on chat@2.0.0" in out
    )
    assert "production in dev: chat@2.0.0 -> chat@1.0.0 (rolled back)" in out
    data = status(run)
    assert (data["phase"], data["weight"]) == ("Aborted", 0)
    assert data["abort_reason"] == "rollback: 2.0.0 is bad"
    intents = registry.list_rollout_intents(1)
    assert [(i.kind, i.actor, i.outcome) for i in intents] == [("abort", "tester", "applied")]
    assert registry.get_traffic("dev").canary is None
    move = registry.alias_history("dev", "production")[-1]
    assert (move.actor, move.reason) == ("tester", "rollback: 2.0.0 is bad")
    # and the lease it took for that one pass is given back: a controller leads at once
    assert registry.acquire_lease("controller/dev", "controller:1", duration_s=5) is not None


def test_rollback_waits_for_the_controller_that_leads(
    run: Run, registry: Registry, spec_file: Path
) -> None:
    # Given a rollout, and a controller elsewhere that holds the lease but does not act
    registry.set_alias("dev", "production", "chat@2.0.0", actor="ci", reason="v2")
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    assert registry.acquire_lease("controller/dev", "elsewhere:1", duration_s=60)
    # When a person rolls back, it records the abort and waits --wait for that controller
    began = time.monotonic()
    out = run("rollback", "--reason", "bad", "--wait", "300ms", code=1).output
    assert "did not apply it within 0.3s" in out
    assert time.monotonic() - began < 10
    # Then it did not touch the rollout or production itself: the abort waits
    assert registry.active_rollout("dev") is not None
    assert [i.kind for i in registry.pending_rollout_intents(1)] == ["abort"]
    assert registry.get_alias("dev", "production").ref == "chat@2.0.0"  # type: ignore[union-attr]


def test_status_watch_ends_with_the_rollout(run: Run, spec_file: Path) -> None:
    run("rollout", "start", str(spec_file), "--candidate", "chat@1.1.0")
    run("rollout", "abort")
    run("controller", "--once")
    out = run("rollout", "status", "--watch").output
    assert "Aborted" in out


def test_rollback_wait_is_a_duration(run: Run) -> None:
    assert "--wait 'soon'" in error(run, "rollback", "--reason", "x", "--wait", "soon")
    assert "longer than 0s" in error(run, "rollback", "--reason", "x", "--wait", "0s")


def test_controller_options(run: Run) -> None:
    assert "--interval" in error(run, "controller", "--interval", "soon")
    assert "longer than 0s" in error(run, "controller", "--interval", "0s")
    run("controller", "--once")  # nothing to do


@pytest.mark.parametrize(
    "command",
    ["start", "status", "promote", "pause", "resume", "abort", "retry", "undo", "list", "history"],
)
def test_every_rollout_command_has_help(run: Run, command: str) -> None:
    out = run("rollout", command, "--help").output
    assert "--env" in out or (command == "start" and "--candidate" in out)
