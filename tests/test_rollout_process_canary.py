"""Canary rollouts by the controller as a real process: `llmship controller` drives a
real gateway in front of a real SmolLM2 model server (stable) and candidates served by
`llmship serve` with the `openai` backend, pointed at a tiny local upstream the test
controls, under steady client load: promoted, aborted, killed and resumed, paused for
no data, and aborted at the progress deadline."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from _rollout_stack import (
    BAD,
    ENV,
    GOOD,
    NEVER,
    STABLE,
    Load,
    Stack,
    error_rate_template,
    wait_until,
)

pytest_plugins = ["_rollout_stack_fixtures"]  # the fixtures stack (one per file) and fresh
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rollout_process")]  # one stack, one worker


# -- the scenarios -------------------------------------------------------------------------


def test_a_good_canary_goes_20_40_100_under_load_and_is_promoted(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a canary 20 -> 40 -> 100 with short pauses and a background error-rate analysis
    spec = {
        "name": "good-canary",
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "3s"}},
                    {"setWeight": 40},
                    {"pause": {"duration": "3s"}},
                    {"setWeight": 100},
                ],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [error_rate_template()],
    }
    # When it runs under steady client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        while record.phase == "Paused" and record.pause_reason and "pause" in record.message:
            record = stack.wait_phase(rollout_id, "Healthy", "Aborted", timeout=60)
        stack.wait_gateway_stable(GOOD)
        promoted_at = time.monotonic()
        time.sleep(1.0)
    # Then it is promoted, the weights went 20, 40, 100 in order and no client saw an error
    record = stack.rollout(rollout_id)
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert stack.production() == GOOD
    assert load.errors() == []
    assert GOOD in load.versions() and STABLE in load.versions()
    assert load.versions(since=promoted_at) == {GOOD}
    weights = [w for w in stack.weights_set(since) if w]
    assert weights == [20.0, 40.0, 100.0], weights
    measurements = stack.registry.list_measurements(rollout_id)
    assert measurements and all(m.phase in {"Successful", "Inconclusive"} for m in measurements)
    assert any(m.phase == "Successful" for m in measurements)
    # and the alias history shows the move, by the controller, for the rollout
    move = stack.registry.alias_history(ENV, "production")[-1]
    assert (move.from_ref, move.to_ref, move.actor) == (STABLE, GOOD, "controller")
    assert "good-canary" in move.reason


def test_an_erroring_candidate_is_aborted_and_no_client_sees_an_error(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given a candidate whose upstream answers 500 to every request
    spec = {
        "name": "bad-canary",
        "strategy": {
            "canary": {
                "steps": [{"setWeight": 30}, {"pause": {"duration": "60s"}}, {"setWeight": 100}],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [error_rate_template()],
    }
    before = stack.bad.hits
    # When it is rolled out under steady client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, BAD)
        record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
        wait_until(lambda: stack.canary_weight() == 0, "the canary to be gone")
        aborted_at = time.monotonic()
        time.sleep(1.5)
        hits_after_abort = stack.bad.hits
        time.sleep(1.5)
    # Then the analysis aborted it, all traffic is back on stable
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "error-rate" in (record.abort_reason or ""), record.abort_reason
    assert stack.bad.hits > before  # the candidate did get traffic
    assert stack.bad.hits == hits_after_abort  # and gets none any more
    assert stack.production() == STABLE
    assert load.versions(since=aborted_at + 1.0) == {STABLE}
    failed = [m for m in stack.registry.list_measurements(rollout_id) if m.phase == "Failed"]
    assert failed and failed[0].value > 0.05
    # and during the whole rollout no client saw an error: the gateway retried on stable
    assert load.errors() == []
    assert len(load.answers) > 5


def test_a_controller_killed_at_every_step_resumes_without_skipping_or_repeating(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a canary of five weights with short pauses
    steps: list[dict[str, Any]] = []
    for weight in (10, 25, 50, 75):
        steps += [{"setWeight": weight}, {"pause": {"duration": "2s"}}]
    steps.append({"setWeight": 100})
    spec = {"name": "killed-canary", "strategy": {"canary": {"steps": steps}}}
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    # When the controller is SIGKILLed as soon as it reaches each new step, and restarted
    seen: list[tuple[int, float]] = []
    deadline = time.monotonic() + 90
    while stack.rollout(rollout_id).phase not in {"Healthy", "Aborted"}:
        assert time.monotonic() < deadline, stack.events(rollout_id)
        record = stack.rollout(rollout_id)
        running = record.phase in {"Progressing", "Paused"}
        if running and (not seen or record.step_index != seen[-1][0]):
            os.kill(stack.controller.proc.pid, signal.SIGKILL)
            stack.controller.proc.wait(timeout=10)
            stack.controller.stop()
            killed = stack.rollout(rollout_id)
            seen.append((killed.step_index, float(killed.state.get("weight", 0.0))))
            # Then, while it is dead, the stored state holds still
            time.sleep(0.5)
            assert stack.rollout(rollout_id).step_index == killed.step_index
            stack.start_controller()
        time.sleep(0.05)
    # Then the rollout finished, each step began exactly once and in order
    record = stack.rollout(rollout_id)
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert len(seen) >= 3, seen
    assert [i for i, _ in seen] == sorted({i for i, _ in seen}), seen
    step_events = stack.events(rollout_id, "rollout.step")
    numbers = [int(re.findall(r"\bstep (\d+)/", m)[0]) for m in step_events]
    assert numbers == list(range(1, len(steps) + 1)), step_events
    # the promotion is saved before it is carried out: a controller killed in between
    # finishes it on its next pass
    stack.wait_production(GOOD)
    # and every weight was set once, in order (a repeated action changes nothing)
    weights = [w for w in stack.weights_set(since) if w]
    assert weights == [10.0, 25.0, 50.0, 75.0, 100.0], weights


def quiet_errors_template() -> dict[str, Any]:
    """An error-rate analysis that waits longer than its window: traffic from before the
    run cannot count, so without new traffic it measures no data."""
    return {
        "name": "errors",
        "metrics": [
            {
                "name": "error-rate",
                "initialDelay": "4s",
                "interval": "1s",
                "count": 2,
                "successCondition": "result <= 0.05",
                "provider": {"builtin": {"metric": "error_rate", "window": "3s"}},
            }
        ],
    }


def quiet_canary(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "errors"}]}},
                    {"setWeight": 100},
                ]
            }
        },
        "analysisTemplates": [quiet_errors_template()],
    }


def test_no_data_pauses_for_a_person_who_aborts_or_resumes(fresh: Stack, tmp_path: Path) -> None:
    stack = fresh
    # Given a canary at 20% whose analysis step needs traffic, and no client sends any
    rollout_id = stack.start_rollout(tmp_path, quiet_canary("quiet-abort"), GOOD)
    # Then the analysis is Inconclusive and the rollout pauses for a person, at 20%
    record = stack.wait_phase(rollout_id, "Paused", "Aborted", "Healthy", timeout=60)
    assert record.phase == "Paused", (record.message, stack.events(rollout_id))
    assert "InconclusiveAnalysis" in (record.pause_reason or ""), record.pause_reason
    [measurement] = stack.registry.list_measurements(rollout_id)
    assert measurement.phase == "Inconclusive"
    assert "no data" in measurement.message, measurement.message
    time.sleep(1.0)  # five controller passes: it waits
    assert stack.rollout(rollout_id).phase == "Paused"
    assert stack.canary_weight() == 20
    # When the person aborts it with the CLI
    out = stack.llmship("rollout", "abort", "quiet-abort", "--env", ENV, "--reason", "no traffic")
    assert "quiet-abort" in out
    # Then it is aborted for their reason and all traffic is back on stable
    record = stack.wait_phase(rollout_id, "Aborted")
    assert record.abort_reason == "no traffic", record.abort_reason
    wait_until(lambda: stack.canary_weight() == 0, "the canary to be gone")
    assert stack.production() == STABLE

    # Given the same canary once more, paused the same way
    since = stack.last_event_id()
    rollout_id = stack.start_rollout(tmp_path, quiet_canary("quiet-resume"), GOOD)
    record = stack.wait_phase(rollout_id, "Paused", "Aborted", "Healthy", timeout=60)
    assert "InconclusiveAnalysis" in (record.pause_reason or ""), record.pause_reason
    # When the person resumes it, with clients calling
    with Load(stack.gateway.url, clients=2) as load:
        stack.llmship("rollout", "resume", "quiet-resume", "--env", ENV, "-r", "looked fine")
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        stack.wait_gateway_stable(GOOD)
    # Then, as in Argo Rollouts, it goes on past the Inconclusive step and is promoted
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert stack.production() == GOOD
    resumed = " ".join(stack.events(rollout_id, "rollout.resumed"))
    assert "looked fine" in resumed, resumed
    assert [m.phase for m in stack.registry.list_measurements(rollout_id)] == ["Inconclusive"]
    assert [w for w in stack.weights_set(since) if w] == [20.0, 100.0]
    assert load.errors() == []


def test_a_candidate_that_never_becomes_ready_is_aborted_at_the_progress_deadline(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a release that no model server serves, and a 3 s progress deadline
    spec = {
        "name": "never-ready",
        "progressDeadline": "3s",
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}},
    }
    started = time.monotonic()
    # When it is rolled out
    rollout_id = stack.start_rollout(tmp_path, spec, NEVER)
    record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
    # Then it is aborted at the deadline, saying why, and it never had any traffic
    assert record.phase == "Aborted"
    assert time.monotonic() - started >= 3.0
    assert "progress deadline (3s) exceeded" in (record.abort_reason or ""), record.abort_reason
    assert f"{NEVER} has no ready model server" in (record.abort_reason or "")
    assert [w for w in stack.weights_set(since) if w] == []
    assert stack.production() == STABLE
