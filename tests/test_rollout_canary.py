"""The canary strategy run by the controller against a real registry (SQLite), fake
gateway statistics and an injected clock, Given / When / Then: steps, analysis,
pauses, and what a person asks (pause, promote, abort, retry, undo)."""

from __future__ import annotations

from _controller import (
    CANARY,
    CANDIDATE,
    SHORT,
    STABLE,
    T0,
    World,
    erroring,
    healthy,
)
from llmship.rollout import RolloutPhase, ops, parse_rollout
from llmship.rollout.records import state_of

pytest_plugins = ["_controller_fixtures"]  # the fixtures registry and world


# -- canary ------------------------------------------------------------------------------


def test_canary_20_50_100_is_promoted_and_the_alias_history_says_why(world: World) -> None:
    # Given a good candidate with a ready model server
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    # When the controller runs
    world.run(60, until=lambda: world.phase() == "Healthy")
    # Then the weights went 20 -> 50 -> 100 and production moved to the candidate
    assert world.phase() == "Healthy"
    assert world.weights_seen() == [20.0, 50.0, 0.0]
    assert world.trace[-1][2] == CANDIDATE
    assert world.production() == CANDIDATE
    policy = world.policy()
    assert (policy.canary, policy.preview, policy.experiment) == (None, None, None)
    move = world.registry.alias_history("dev", "production")[-1]
    assert (move.from_ref, move.to_ref, move.actor) == (STABLE, CANDIDATE, "controller")
    assert "rollout chat-canary" in move.reason
    assert world.messages() == [
        "step 1/6: setWeight 20: chat@1.1.0 gets 20% of the requests",
        "step 2/6: pause 10s",
        "step 3/6: analysis errors",
        "step 4/6: setWeight 50: chat@1.1.0 gets 50% of the requests",
        "step 5/6: pause 10s",
        "step 6/6: setWeight 100: chat@1.1.0 gets 100% of the requests",
    ]
    # measurements: 3 in the background run, 3 in the analysis step, one interval apart
    measurements = world.registry.list_measurements(world.rollout().id)
    assert [(m.run, m.phase) for m in measurements] == [
        ("background.1", "Successful"),
        ("background.1", "Successful"),
        ("background.1", "Successful"),
        ("step3.2", "Successful"),
        ("step3.2", "Successful"),
        ("step3.2", "Successful"),
    ]
    assert [m.at.timestamp() - T0 for m in measurements] == [6, 11, 16, 16, 21, 26]
    assert world.rollout().active is False


def test_failing_analysis_aborts_and_puts_all_traffic_on_stable_at_once(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(erroring())
    revision = world.policy().revision
    world.run(30, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert "background analysis run background.1 ended Failed" in (record.abort_reason or "")
    assert world.weights_seen() == [20.0, 0.0]
    # two failures are needed (failureLimit 1): at 5s and 10s after setWeight 20
    assert world.trace[-1][0] == 11
    policy = world.policy()
    assert policy.canary is None and policy.canary_weight == 0.0
    assert policy.revision == revision + 2  # setWeight 20, then one write back to stable
    assert world.production() == STABLE
    traffic = world.registry.events(kind="traffic.changed")[0]
    assert traffic.actor == "controller"
    assert "aborted" in traffic.message


def test_no_data_pauses_then_resume_continues(world: World) -> None:
    world.start(CANARY)
    world.ready()  # no statistics at all: no data
    world.run(
        10,
        until=lambda: (
            world.phase() == "Paused"
            and world.rollout().pause_reason is not None
            and "Inconclusive" in (world.rollout().pause_reason or "")
        ),
    )
    record = world.rollout()
    assert "InconclusiveAnalysis" in (record.pause_reason or "")
    world.run(20)
    assert world.rollout().step_index == 1  # stays paused for a person
    assert world.policy().canary_weight == 20.0
    # When a person resumes with data now flowing
    world.candidate_stats(healthy())
    world.ask("resume", "traffic is flowing now")
    world.run(60, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert "resumed by ann: traffic is flowing now" in world.messages("rollout.resumed")


def test_no_data_pauses_then_abort(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(
        10,
        until=lambda: (
            world.phase() == "Paused" and "Inconclusive" in (world.rollout().pause_reason or "")
        ),
    )
    world.ask("abort", "no traffic to judge")
    world.run(1)
    assert world.phase() == "Aborted"
    assert world.rollout().abort_reason == "no traffic to judge"
    assert world.policy().canary is None


def test_a_candidate_that_never_becomes_ready_is_aborted_at_the_deadline(world: World) -> None:
    world.start({**CANARY, "progressDeadline": "30s"})
    world.run(40, until=lambda: world.phase() == "Aborted")
    record = world.rollout()
    assert record.phase == "Aborted"
    assert world.trace[-1][0] == 31  # blocked from the first pass at 1s
    assert "progress deadline (30s) exceeded" in (record.abort_reason or "")
    assert "chat@1.1.0 has no ready model server" in (record.abort_reason or "")
    assert world.weights_seen() == [0.0]  # never any traffic


def test_a_person_pauses_and_the_weights_stay(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.candidate_stats(healthy())
    world.run(2)
    world.ask("pause", "looking at the dashboards")
    world.run(100)
    record = world.rollout()
    assert record.phase == "Paused"
    assert record.step_index == 1  # the 10s pause step's timer stopped with the pause
    assert world.policy().canary_weight == 20.0
    world.ask("promote", "skip the pause")
    world.run(1)
    assert (world.phase(), world.rollout().step_index) == ("Progressing", 2)
    world.ask("promote", "skip the analysis")
    world.run(1)
    assert world.policy().canary_weight == 50.0


def test_promote_full_and_then_undo(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    world.ask("promoteFull", "urgent fix")
    world.run(1)
    assert world.phase() == "Healthy"
    assert world.production() == CANDIDATE
    move = world.registry.alias_history("dev", "production")[-1]
    assert (move.actor, move.reason) == ("ann", "rollout chat-canary: urgent fix")
    ops.undo(world.registry, "dev", actor="bob", reason="users complain")
    assert world.production() == STABLE
    assert world.registry.get_traffic("dev").canary is None  # no stale canary comes back


def test_retry_after_abort_runs_again(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(2)
    world.ask("abort")
    world.run(1)
    world.candidate_stats(healthy())
    world.ask("retry", "fixed the config")
    world.run(60, until=lambda: world.phase() == "Healthy")
    assert world.phase() == "Healthy"
    assert state_of(world.rollout()).attempt == 2


def test_an_intent_that_no_longer_applies_is_rejected(world: World) -> None:
    world.start(CANARY)
    world.ready()
    world.run(1)
    world.ask("pause")
    world.registry.add_rollout_intent(world.rollout().id, "pause", actor="bob")  # twice
    world.run(1)
    rejected = world.messages("rollout.rejected")
    assert len(rejected) == 1
    assert "pause by bob not applied: " in rejected[0]
    assert world.registry.pending_rollout_intents(world.rollout().id) == []


def test_the_repository_specs_run(world: World) -> None:
    record = world.start("rollouts/chat-canary.yaml")
    assert state_of(record).phase is RolloutPhase.PENDING


def test_a_retry_while_another_rollout_runs_is_rejected(world: World) -> None:
    first = world.start(CANARY)
    world.ask("abort")
    world.run(1)
    world.ask("retry")  # checked now: nothing else runs yet
    second = ops.start(world.registry, parse_rollout(SHORT), CANDIDATE, env="dev", actor="bob")
    world.run(1)
    [rejected] = world.messages("rollout.rejected", first.id)
    assert "retry by ann not applied" in rejected
    assert world.registry.get_rollout(first.id).phase == "Aborted"
    assert world.registry.get_rollout(second.id).active
    assert world.registry.pending_rollout_intents(first.id) == []
