"""The rollout state machine, pure: ``step(state, event, now) -> (state, actions)``.

Tables of cases (after argo-rollouts' ``rollout/canary_test.go``): each script is
a list of ``(time, event)`` and the expectations are the phase, the step, the
weight and the actions handed to the controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from _registry import errors_template
from llmship.analysis.phases import Phase
from llmship.rollout import RolloutPhase, RolloutState, parse_rollout, step
from llmship.rollout.events import (
    Abort,
    AnalysisResult,
    Pause,
    Promote,
    Resume,
    Retry,
    RolloutEvent,
    Tick,
    TransitionError,
)
from llmship.rollout.machine import check, describe
from llmship.rollout.state import Action, PauseReason

ERRORS = errors_template(failure_limit=1)


def canary(steps: list[dict[str, Any]], *, background: dict[str, Any] | None = None, **top: Any):
    strategy: dict[str, Any] = {"steps": steps}
    if background is not None:
        strategy["analysis"] = background
    return parse_rollout(
        {"name": "c", "strategy": {"canary": strategy}, "analysisTemplates": [ERRORS], **top}
    )


SEED = canary(
    [
        {"setWeight": 20},
        {"pause": {"duration": "10s"}},
        {"analysis": {"templates": [{"templateName": "errors"}]}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 100},
    ],
    background={"templates": [{"templateName": "errors"}]},
)


def state_of(spec: Any, **changes: Any) -> RolloutState:
    base = RolloutState(
        env="dev",
        name=spec.name,
        spec=spec,
        candidate="chat@1.1.0",
        stable="chat@1.0.0",
        rollout_id=7,
    )
    return replace(base, **changes)


def play(
    state: RolloutState, script: Sequence[tuple[float, RolloutEvent]]
) -> tuple[RolloutState, list[Action]]:
    """Apply each event at its time; every action handed out, in order."""
    actions: list[Action] = []
    for now, event in script:
        state, more = step(state, event, now)
        actions += more
    return state, actions


def kinds(actions: Sequence[Action]) -> list[str]:
    return [a.describe() for a in actions]


def traffic(actions: Sequence[Action]) -> list[str]:
    """Only the actions that touch traffic or aliases."""
    return [a.describe() for a in actions if a.kind not in ("startAnalysis", "stopAnalysis")]


def live(state: RolloutState, role: str) -> str:
    runs = [r for r in state.runs if r.role == role and r.live]
    assert len(runs) == 1, state.runs
    return runs[0].name


# -- phases and checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        (RolloutPhase.PENDING, False),
        (RolloutPhase.PROGRESSING, False),
        (RolloutPhase.PAUSED, False),
        (RolloutPhase.HEALTHY, True),
        (RolloutPhase.ABORTED, True),
    ],
)
def test_terminal_phases(phase: RolloutPhase, terminal: bool) -> None:
    assert phase.is_terminal is terminal


@pytest.mark.parametrize(
    ("changes", "event", "error"),
    [
        ({"phase": RolloutPhase.HEALTHY}, Promote("ann"), "nothing to promote"),
        ({}, Promote("ann"), r"step 1/6 \(setWeight 20\), which waits for chat@1.1.0"),
        ({"phase": RolloutPhase.ABORTED}, Promote("ann", full=True), "nothing to promote"),
        ({"phase": RolloutPhase.HEALTHY}, Pause("ann"), "nothing to pause"),
        ({"phase": RolloutPhase.PAUSED, "manual_pause": True}, Pause("ann"), "already paused"),
        ({"phase": RolloutPhase.PROGRESSING}, Resume("ann"), "is not paused"),
        ({"phase": RolloutPhase.ABORTED}, Resume("ann"), "nothing to resume"),
        ({"phase": RolloutPhase.ABORTED}, Abort("ann"), "already Aborted"),
        ({"phase": RolloutPhase.HEALTHY}, Abort("ann"), "already Healthy"),
        ({"phase": RolloutPhase.PROGRESSING}, Retry("ann"), "only an Aborted"),
        ({"phase": RolloutPhase.HEALTHY}, Retry("ann"), "only an Aborted"),
        (
            {
                "phase": RolloutPhase.PAUSED,
                "step_index": 1,
                "pause_reason": PauseReason.CANARY_PAUSE_STEP,
            },
            Resume("ann"),
            "ends by itself",
        ),
    ],
)
def test_events_that_do_not_apply_are_refused(
    changes: dict[str, Any], event: RolloutEvent, error: str
) -> None:
    state = state_of(SEED, **changes)
    with pytest.raises(TransitionError, match=error):
        step(state, event, 100.0)


@pytest.mark.parametrize(
    ("changes", "event"),
    [
        ({"step_index": 1, "step_applied": True}, Promote("ann")),
        ({"phase": RolloutPhase.PAUSED, "pause_reason": PauseReason.INCONCLUSIVE}, Promote("ann")),
        ({}, Promote("ann", full=True)),
        ({}, Pause("ann")),
        ({}, Abort("ann")),
        ({"phase": RolloutPhase.ABORTED}, Retry("ann")),
        ({"phase": RolloutPhase.PAUSED, "manual_pause": True}, Resume("ann")),
        (
            {"phase": RolloutPhase.PAUSED, "pause_reason": PauseReason.INCONCLUSIVE},
            Resume("ann"),
        ),
        ({"phase": RolloutPhase.HEALTHY}, Tick()),
        ({"phase": RolloutPhase.ABORTED}, AnalysisResult("x.1", Phase.FAILED)),
    ],
)
def test_events_that_apply_pass_the_check(changes: dict[str, Any], event: RolloutEvent) -> None:
    check(state_of(SEED, **changes), event)


# -- canary ---------------------------------------------------------------------------------


def test_a_pending_canary_waits_for_a_ready_candidate() -> None:
    state, actions = step(state_of(SEED), Tick(ready=False), 0.0)
    assert state.phase is RolloutPhase.PROGRESSING
    assert state.step_index == 0
    assert actions == []
    assert state.blocked_since == 0.0
    assert "no ready model server" in state.blocked_reason
    assert [n.kind for n in state.notes] == ["rollout.started", "rollout.waiting"]


def test_the_seed_canary_from_start_to_promotion() -> None:
    state = state_of(SEED)
    state, actions = play(state, [(0, Tick(ready=False)), (3, Tick())])
    assert kinds(actions) == ["startAnalysis background.1", "setWeight 20"]
    assert state.phase is RolloutPhase.PAUSED  # the 10s pause step
    assert state.pause_reason is PauseReason.CANARY_PAUSE_STEP
    assert (state.step_index, state.weight, state.blocked_since) == (1, 20.0, None)

    state, actions = step(state, Tick(), 12.9)
    assert (state.step_index, actions) == (1, [])
    state, actions = step(state, Tick(), 13.0)
    assert state.step_index == 2
    assert state.phase is RolloutPhase.PROGRESSING
    assert kinds(actions) == ["startAnalysis step3.2"]

    state, actions = step(state, AnalysisResult("step3.2", Phase.SUCCESSFUL, "count reached"), 30)
    assert kinds(actions) == ["setWeight 50"]
    assert state.step_index == 4
    assert state.phase is RolloutPhase.PAUSED  # pause {} waits for a person
    state, actions = step(state, Tick(), 3600)
    assert (state.step_index, actions) == (4, [])

    state, actions = step(state, Resume("ann", "looks good"), 3601)
    assert kinds(actions) == [
        "setWeight 100",
        "stopAnalysis background.1",
        "promoteAlias",
        "clearTraffic",
    ]
    assert state.phase is RolloutPhase.HEALTHY
    assert state.weight == 100.0
    assert all(not r.live for r in state.runs)
    promote = next(a for a in actions if a.kind == "promoteAlias")
    assert promote.actor == "controller"
    assert "all steps passed" in promote.reason


@pytest.mark.parametrize(
    ("phase", "outcome", "traffic_actions"),
    [
        (Phase.SUCCESSFUL, RolloutPhase.PAUSED, ["setWeight 50"]),  # then pause {}
        (Phase.FAILED, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.ERROR, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.INCONCLUSIVE, RolloutPhase.PAUSED, []),
    ],
)
def test_the_verdict_of_an_analysis_step(
    phase: Phase, outcome: RolloutPhase, traffic_actions: list[str]
) -> None:
    state, _ = play(state_of(SEED), [(0, Tick()), (10, Tick())])
    run = live(state, "step")
    state, actions = step(state, AnalysisResult(run, phase, "why"), 20)
    assert state.phase is outcome
    assert traffic(actions) == traffic_actions
    if phase is Phase.INCONCLUSIVE:
        assert state.pause_reason is PauseReason.INCONCLUSIVE
        assert state.step_index == 2
    if outcome is RolloutPhase.ABORTED:
        assert state.weight == 0.0
        assert f"run {run} ended {phase}" in (state.abort_reason or "")
        assert all(not r.live for r in state.runs)


@pytest.mark.parametrize(
    ("phase", "outcome", "traffic_actions"),
    [
        (Phase.SUCCESSFUL, RolloutPhase.PAUSED, []),  # stops watching; the pause step goes on
        (Phase.FAILED, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.ERROR, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.INCONCLUSIVE, RolloutPhase.PAUSED, []),
    ],
)
def test_the_verdict_of_background_analysis(
    phase: Phase, outcome: RolloutPhase, traffic_actions: list[str]
) -> None:
    state, _ = step(state_of(SEED), Tick(), 0)
    state, actions = step(state, AnalysisResult("background.1", phase), 5)
    assert state.phase is outcome
    assert traffic(actions) == traffic_actions
    expected = {
        Phase.SUCCESSFUL: PauseReason.CANARY_PAUSE_STEP,
        Phase.INCONCLUSIVE: PauseReason.INCONCLUSIVE,
    }.get(phase)
    assert state.pause_reason is expected


def test_inconclusive_step_analysis_then_resume_goes_to_the_next_step() -> None:
    state, _ = play(state_of(SEED), [(0, Tick()), (10, Tick())])
    state, _ = step(state, AnalysisResult(live(state, "step"), Phase.INCONCLUSIVE, "no data"), 20)
    assert state.phase is RolloutPhase.PAUSED
    state, actions = step(state, Tick(), 500)  # nobody came: it stays
    assert (state.step_index, actions) == (2, [])
    state, actions = step(state, Resume("ann"), 600)
    assert kinds(actions) == ["setWeight 50"]
    assert state.step_index == 4


def test_inconclusive_step_analysis_then_abort() -> None:
    state, _ = play(state_of(SEED), [(0, Tick()), (10, Tick())])
    state, _ = step(state, AnalysisResult(live(state, "step"), Phase.INCONCLUSIVE), 20)
    state, actions = step(state, Abort("ann", "not sure about it"), 30)
    assert state.phase is RolloutPhase.ABORTED
    assert state.abort_reason == "not sure about it"
    assert traffic(actions) == ["clearTraffic"]
    assert actions[-1].actor == "ann"


def test_inconclusive_background_then_resume_starts_a_new_background_run() -> None:
    state, _ = step(state_of(SEED), Tick(), 0)
    state, _ = step(state, AnalysisResult("background.1", Phase.INCONCLUSIVE), 5)
    assert state.pause_reason is PauseReason.INCONCLUSIVE
    state, actions = step(state, Resume("ann"), 7)
    assert kinds(actions) == ["startAnalysis background.2"]
    assert state.pause_reason is PauseReason.CANARY_PAUSE_STEP  # the 10s pause goes on
    assert live(state, "background") == "background.2"
    state, actions = step(state, Tick(), 10)
    assert kinds(actions) == ["startAnalysis step3.3"]


def test_background_analysis_starts_at_its_starting_step() -> None:
    spec = canary(
        [{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 30}, {"pause": {}}],
        background={"templates": [{"templateName": "errors"}], "startingStep": 2},
    )
    state, actions = step(state_of(spec), Tick(), 0)
    assert kinds(actions) == ["setWeight 10"]
    state, actions = step(state, Tick(), 5)
    assert kinds(actions) == ["startAnalysis background.1", "setWeight 30"]


def test_promote_skips_the_current_step_and_full_promotes_now() -> None:
    state, _ = step(state_of(SEED), Tick(), 0)
    state, actions = step(state, Promote("ann"), 1)  # skips the 10s pause
    assert state.step_index == 2
    assert kinds(actions) == ["startAnalysis step3.2"]
    state, actions = step(state, Promote("ann"), 2)  # skips the analysis step
    assert kinds(actions) == ["stopAnalysis step3.2", "setWeight 50"]
    state, actions = step(state, Promote("bob", "ship it", full=True), 3)
    assert state.phase is RolloutPhase.HEALTHY
    assert traffic(actions) == ["promoteAlias", "clearTraffic"]
    assert {a.actor for a in actions if a.kind == "promoteAlias"} == {"bob"}
    assert "ship it" in actions[-1].reason


def test_promote_never_skips_a_weight_change_waiting_for_the_candidate() -> None:
    # Given the first step (setWeight 20) waits for the candidate, and background
    # analysis paused the rollout as Inconclusive meanwhile
    state, _ = step(state_of(SEED), Tick(ready=False), 0)
    state = replace(state, phase=RolloutPhase.PAUSED, pause_reason=PauseReason.INCONCLUSIVE)
    # When a person promotes
    state, actions = step(state, Promote("ann"), 1)
    # Then the pause is lifted but the weight step stays, made once the candidate is ready
    assert (state.step_index, state.step_applied, state.weight) == (0, False, 0.0)
    assert state.pause_reason is None
    assert "is not skipped" in state.notes[-1].message
    state, actions = step(state, Tick(ready=True), 2)
    assert "setWeight 20" in kinds(actions)
    assert (state.step_index, state.weight) == (1, 20.0)


def test_a_persons_pause_stops_the_step_timer() -> None:
    state, _ = step(state_of(SEED), Tick(), 0)  # 10s pause from t=0
    state, _ = step(state, Pause("ann", "lunch"), 4)
    assert state.phase is RolloutPhase.PAUSED
    assert state.manual_pause
    state, actions = step(state, Tick(), 100)
    assert (state.step_index, actions) == (1, [])
    state, _ = step(state, Resume("ann"), 200)
    assert state.step_paused_s == 196
    state, _ = step(state, Tick(), 205.9)
    assert state.step_index == 1  # 4s before the pause + 5.9s after
    state, _ = step(state, Tick(), 206)
    assert state.step_index == 2


def test_a_persons_pause_while_a_pause_step_waits_is_lifted_by_one_resume() -> None:
    state, _ = play(state_of(SEED), [(0, Tick()), (10, Tick())])  # at the analysis step
    state, _ = step(state, AnalysisResult(live(state, "step"), Phase.SUCCESSFUL), 11)
    assert state.pause_reason is PauseReason.CANARY_PAUSE_STEP  # pause {}
    state, _ = step(state, Pause("ann"), 12)
    state, actions = step(state, Resume("ann"), 13)
    assert state.phase is RolloutPhase.HEALTHY
    assert "promoteAlias" in kinds(actions)


def test_progress_deadline_aborts_a_candidate_that_never_becomes_ready() -> None:
    spec = canary([{"setWeight": 20}], progressDeadline="60s")
    state, _ = step(state_of(spec), Tick(ready=False), 0)
    state, actions = step(state, Tick(ready=False), 59)
    assert state.phase is RolloutPhase.PROGRESSING
    state, actions = step(state, Tick(ready=False), 60)
    assert state.phase is RolloutPhase.ABORTED
    assert "progress deadline (1m) exceeded" in (state.abort_reason or "")
    assert traffic(actions) == ["clearTraffic"]


def test_paused_time_does_not_count_against_the_progress_deadline() -> None:
    spec = canary([{"setWeight": 20}], progressDeadline="60s")
    state, _ = play(
        state_of(spec),
        [(0, Tick(ready=False)), (30, Pause("ann")), (500, Tick(ready=False)), (1000, Resume("a"))],
    )
    assert state.blocked_since == 970.0
    state, _ = step(state, Tick(ready=False), 1029)
    assert state.phase is RolloutPhase.PROGRESSING
    state, _ = step(state, Tick(ready=False), 1030)
    assert state.phase is RolloutPhase.ABORTED


def test_becoming_ready_clears_the_deadline() -> None:
    spec = canary([{"setWeight": 20}, {"pause": {}}], progressDeadline="60s")
    state, _ = play(state_of(spec), [(0, Tick(ready=False)), (50, Tick(ready=True))])
    assert state.blocked_since is None
    state, _ = step(state, Tick(ready=False), 500)
    assert state.phase is RolloutPhase.PAUSED  # a pause step needs no ready candidate


def test_failing_actions_block_the_rollout_until_the_deadline() -> None:
    spec = canary([{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 40}])
    state, _ = step(state_of(spec), Tick(), 0)
    state, actions = step(state, Tick(failing="setWeight 20 failed: registry down"), 5)
    assert actions == []
    assert state.step_index == 1  # no progress while the last actions failed
    assert state.blocked_reason == "setWeight 20 failed: registry down"
    state, actions = step(state, Tick(failing="setWeight 20 failed"), 605)
    assert state.phase is RolloutPhase.ABORTED
    assert traffic(actions) == ["clearTraffic"]


def test_retry_starts_an_aborted_rollout_again() -> None:
    state, _ = step(state_of(SEED), Tick(), 0)
    state, _ = step(state, Abort("alertmanager", "alert HighErrorRate fired"), 1)
    state, actions = step(state, Retry("ann"), 2)
    assert state.phase is RolloutPhase.PAUSED
    assert state.attempt == 2
    assert state.abort_reason is None
    assert kinds(actions) == ["startAnalysis background.2", "setWeight 20"]
    assert [r.name for r in state.runs] == ["background.2"]


def test_a_verdict_for_a_run_that_is_not_live_changes_nothing() -> None:
    state, _ = step(state_of(SEED), Tick(), 0)
    for name in ("background.9", "step3.1"):
        after, actions = step(state, AnalysisResult(name, Phase.FAILED), 1)
        assert (after, actions) == (state, [])
        assert after.notes == ()


def test_abort_of_a_pending_rollout() -> None:
    state, actions = step(state_of(SEED), Abort("ann"), 0)
    assert state.phase is RolloutPhase.ABORTED
    assert state.abort_reason == "aborted by ann"
    assert traffic(actions) == ["clearTraffic"]


def test_the_state_survives_storage() -> None:
    state, _ = play(state_of(SEED), [(0, Tick()), (4, Pause("ann")), (5, Tick())])
    state = replace(state, pending=(Action("setWeight", 20.0, actor="x", reason="y"),))
    again = RolloutState.from_dict(
        state.to_dict(),
        env=state.env,
        name=state.name,
        spec=SEED.to_dict(),
        candidate=state.candidate,
        stable=state.stable,
        rollout_id=7,
    )
    assert again == state


@pytest.mark.parametrize(
    ("index", "text"),
    [
        (0, "step 1/6: setWeight 20"),
        (1, "step 2/6: pause 10s"),
        (2, "step 3/6: analysis errors"),
        (4, "step 5/6: pause until promoted"),
        (6, "all 6 steps done"),
    ],
)
def test_describe_canary_steps(index: int, text: str) -> None:
    assert describe(state_of(SEED, step_index=index)) == text


# -- blue-green --------------------------------------------------------------------------


def blue_green(**strategy: Any):
    return parse_rollout(
        {"name": "bg", "strategy": {"blueGreen": strategy}, "analysisTemplates": [ERRORS]}
    )


ANALYSIS = {"templates": [{"templateName": "errors"}]}


def test_blue_green_auto_promotion_after_pre_and_post_analysis() -> None:
    spec = blue_green(
        autoPromotionSeconds=30, prePromotionAnalysis=ANALYSIS, postPromotionAnalysis=ANALYSIS
    )
    state, actions = step(state_of(spec), Tick(), 0)
    assert kinds(actions) == ["setPreview", "startAnalysis prepromotion.1"]
    assert describe(state) == "stage 1/2: preview"
    state, actions = step(state, AnalysisResult("prepromotion.1", Phase.SUCCESSFUL), 10)
    assert actions == []  # 30s in preview first
    state, actions = step(state, Tick(), 30)
    assert kinds(actions) == ["promotePreview", "startAnalysis postpromotion.2"]
    assert state.switched
    state, actions = step(state, AnalysisResult("postpromotion.2", Phase.SUCCESSFUL), 60)
    assert state.phase is RolloutPhase.HEALTHY
    assert actions == []


def test_blue_green_post_promotion_failure_switches_back() -> None:
    spec = blue_green(postPromotionAnalysis=ANALYSIS)
    state, actions = step(state_of(spec), Tick(), 0)
    assert traffic(actions) == ["setPreview", "promotePreview"]  # no wait, no pre analysis
    state, actions = step(state, AnalysisResult("postpromotion.1", Phase.FAILED, "errors"), 20)
    assert state.phase is RolloutPhase.ABORTED
    assert traffic(actions) == ["revertAlias", "clearTraffic"]
    assert "post-promotion analysis run postpromotion.1 ended Failed" in (state.abort_reason or "")


def test_blue_green_pre_promotion_failure_only_clears_the_preview() -> None:
    spec = blue_green(prePromotionAnalysis=ANALYSIS)
    state, _ = step(state_of(spec), Tick(), 0)
    state, actions = step(state, AnalysisResult("prepromotion.1", Phase.ERROR), 5)
    assert state.phase is RolloutPhase.ABORTED
    assert traffic(actions) == ["clearTraffic"]


def test_blue_green_without_auto_promotion_waits_for_a_person() -> None:
    spec = blue_green(autoPromotionEnabled=False)
    state, _ = step(state_of(spec), Tick(), 0)
    assert state.pause_reason is PauseReason.BLUE_GREEN_PAUSE
    assert state.phase is RolloutPhase.PAUSED
    state, actions = step(state, Tick(), 10_000)
    assert actions == []
    state, actions = step(state, Resume("ann"), 10_001)
    assert traffic(actions) == ["promotePreview"]
    assert state.phase is RolloutPhase.HEALTHY


def test_blue_green_promote_full_skips_post_promotion_analysis() -> None:
    spec = blue_green(autoPromotionEnabled=False, postPromotionAnalysis=ANALYSIS)
    state, _ = step(state_of(spec), Tick(), 0)
    state, actions = step(state, Promote("ann", full=True), 5)
    assert kinds(actions) == ["promotePreview"]
    assert state.phase is RolloutPhase.HEALTHY


def test_blue_green_waits_for_a_ready_candidate() -> None:
    spec = blue_green()
    state, actions = step(state_of(spec), Tick(ready=False), 0)
    assert actions == []
    assert "no ready model server" in state.blocked_reason


# -- experiment --------------------------------------------------------------------------


def experiment(**extra: Any):
    strategy = {
        "duration": "1h",
        "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
        "decision": {"metric": "feedback_mean"},
        **extra,
    }
    return parse_rollout(
        {"name": "ab", "strategy": {"experiment": strategy}, "analysisTemplates": [ERRORS]}
    )


@pytest.mark.parametrize(
    ("phase", "outcome", "traffic_actions"),
    [
        (Phase.SUCCESSFUL, RolloutPhase.HEALTHY, ["promoteAlias", "clearTraffic"]),
        (Phase.FAILED, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.ERROR, RolloutPhase.ABORTED, ["clearTraffic"]),
        (Phase.INCONCLUSIVE, RolloutPhase.PAUSED, []),
    ],
)
def test_the_experiment_is_decided_after_its_duration(
    phase: Phase, outcome: RolloutPhase, traffic_actions: list[str]
) -> None:
    spec = experiment(analysis=ANALYSIS)
    state, actions = step(state_of(spec), Tick(), 0)
    assert kinds(actions) == ["setExperiment", "startAnalysis guard.1"]
    state, actions = step(state, Tick(), 3599)
    assert actions == []
    state, actions = step(state, Tick(), 3600)
    assert kinds(actions) == ["stopAnalysis guard.1", "startAnalysis decision.2"]
    state, actions = step(state, AnalysisResult("decision.2", phase, "B better"), 3601)
    assert state.phase is outcome
    assert traffic(actions) == traffic_actions
    if phase is Phase.FAILED:
        assert "lost the experiment" in (state.abort_reason or "")


def test_an_inconclusive_experiment_is_promoted_by_a_person() -> None:
    state, _ = play(state_of(experiment()), [(0, Tick()), (3600, Tick())])
    state, _ = step(state, AnalysisResult("decision.1", Phase.INCONCLUSIVE, "p=0.4"), 3601)
    state, actions = step(state, Resume("ann"), 4000)
    assert state.phase is RolloutPhase.HEALTHY
    assert traffic(actions) == ["promoteAlias", "clearTraffic"]


def test_promote_ends_the_experiment_early_and_decides_now() -> None:
    # Given an experiment of 1h running for 10 minutes with its guard
    state, _ = step(state_of(experiment(analysis=ANALYSIS)), Tick(), 0)
    # When a person promotes, the time is skipped but not the decision
    state, actions = step(state, Promote("ann", "enough ratings"), 600)
    assert kinds(actions) == ["stopAnalysis guard.1", "startAnalysis decision.2"]
    assert "experiment ended by ann after 10m of 1h: deciding now" in state.notes[0].message
    state, actions = step(state, AnalysisResult("decision.2", Phase.FAILED, "A better"), 601)
    assert state.phase is RolloutPhase.ABORTED
    # And promote --full takes the candidate without a decision
    state, _ = step(state_of(experiment()), Tick(), 0)
    state, actions = step(state, Promote("ann", full=True), 5)
    assert state.phase is RolloutPhase.HEALTHY


def test_a_failing_guard_ends_the_experiment_early() -> None:
    state, _ = step(state_of(experiment(analysis=ANALYSIS)), Tick(), 0)
    state, actions = step(state, AnalysisResult("guard.1", Phase.FAILED), 60)
    assert state.phase is RolloutPhase.ABORTED
    assert traffic(actions) == ["clearTraffic"]


# -- shadow -----------------------------------------------------------------------------------


def shadow():
    return parse_rollout(
        {
            "name": "sh",
            "strategy": {"shadow": {"percent": 25, "duration": "5m", "analysis": ANALYSIS}},
            "analysisTemplates": [ERRORS],
        }
    )


def test_shadow_mirrors_then_asks_for_the_verdict() -> None:
    state, actions = step(state_of(shadow()), Tick(), 0)
    assert kinds(actions) == ["setShadow 25", "startAnalysis shadow.1"]
    state, _ = step(state, Tick(), 300)
    assert state.run("shadow.1").terminating  # type: ignore[union-attr]
    assert state.phase is RolloutPhase.PROGRESSING
    state, actions = step(state, AnalysisResult("shadow.1", Phase.SUCCESSFUL), 301)
    assert state.phase is RolloutPhase.HEALTHY
    assert traffic(actions) == ["promoteAlias", "clearTraffic"]


def test_shadow_aborts_at_once_on_failure() -> None:
    state, _ = step(state_of(shadow()), Tick(), 0)
    state, actions = step(state, AnalysisResult("shadow.1", Phase.FAILED, "similarity 0.1"), 30)
    assert state.phase is RolloutPhase.ABORTED
    assert traffic(actions) == ["clearTraffic"]


def test_shadow_run_successful_early_waits_for_the_duration() -> None:
    state, _ = step(state_of(shadow()), Tick(), 0)
    state, actions = step(state, AnalysisResult("shadow.1", Phase.SUCCESSFUL), 100)
    assert (state.phase, actions) == (RolloutPhase.PROGRESSING, [])
    state, actions = step(state, Tick(), 300)
    assert state.phase is RolloutPhase.HEALTHY
