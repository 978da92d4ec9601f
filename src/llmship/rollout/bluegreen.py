"""Blue-green: the candidate on the preview route, then all traffic at once
(Argo Rollouts' ``rolloutBlueGreen``).

Stage 0, **preview**: once the candidate has a ready model server it answers the
preview route, and the pre-promotion analysis (if any) runs. When it is
Successful: with ``autoPromotionEnabled`` the switch comes after
``autoPromotionSeconds`` in preview; without, the rollout pauses until a person
promotes. Stage 1, **switched**: ``production`` moved to the candidate in one
transaction (``promotePreview``); the post-promotion analysis (if any) runs, and
its failure switches back to the previous release.
"""

from __future__ import annotations

from dataclasses import replace

from llmship.analysis.durations import format_duration
from llmship.analysis.phases import Phase
from llmship.rollout.spec import BlueGreenStrategy
from llmship.rollout.state import Action, AnalysisRun, PauseReason, RolloutState
from llmship.rollout.strategy import FIRST, SECOND, TwoStage
from llmship.rollout.transitions import (
    Result,
    enter_step,
    finish,
    judge,
    note,
    pause_for,
    start_run,
    stop_runs,
)

__all__ = ["PREVIEW", "SWITCHED", "BlueGreen"]

PREVIEW = FIRST
SWITCHED = SECOND
PRE = "strategy.blueGreen.prePromotionAnalysis"
POST = "strategy.blueGreen.postPromotionAnalysis"


def _strategy(state: RolloutState) -> BlueGreenStrategy:
    strategy = state.spec.strategy.blue_green
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not a blue-green rollout")
    return strategy


class BlueGreen(TwoStage):
    """The blue-green strategy's part of the state machine."""

    stages = ("preview", "switched (post-promotion)")

    def begin(self, state: RolloutState, now: float) -> Result:
        actions = [
            Action(
                "setPreview", reason=f"rollout {state.name}: {state.candidate} on the preview route"
            )
        ]
        state = note(
            state,
            "rollout.step",
            f"preview: {state.candidate} answers requests sent with X-Llmship-Variant: preview",
        )
        if _strategy(state).pre_promotion_analysis is not None:
            state, more = start_run(state, "prePromotion", PRE, now)
            actions += more
        return state, actions

    def advance(self, state: RolloutState, now: float) -> Result | None:
        strategy = _strategy(state)
        pre = state.latest_run("prePromotion")
        if pre is not None and pre.phase is not Phase.SUCCESSFUL:
            return None
        if not strategy.auto_promotion_enabled:
            message = f"{state.candidate} waits in preview for `llmship rollout promote`"
            return pause_for(state, PauseReason.BLUE_GREEN_PAUSE, message), []
        wait = float(strategy.auto_promotion_seconds or 0)
        if state.step_elapsed(now) < wait:
            return None
        reason = f"automatic promotion after {format_duration(wait)} in preview"
        return self._switch(state, now, actor="controller", reason=reason)

    def settle(self, state: RolloutState, now: float) -> Result:
        if _strategy(state).post_promotion_analysis is not None:
            return start_run(state, "postPromotion", POST, now)
        return state, []

    def conclude(self, state: RolloutState, now: float) -> Result | None:
        post = state.latest_run("postPromotion")
        if post is not None and post.phase is not Phase.SUCCESSFUL:
            return None
        why = "post-promotion analysis passed" if post is not None else "switched"
        return finish(state, now, actor="controller", reason=why, actions=[])

    def _switch(self, state: RolloutState, now: float, *, actor: str, reason: str) -> Result:
        state, actions = stop_runs(state, now, "switched", roles=("prePromotion",))
        actions.append(
            Action(
                "promotePreview",
                actor=actor,
                reason=f"rollout {state.name}: switch to {state.candidate} ({reason})",
            )
        )
        stable = state.stable or "(none)"
        state = note(
            replace(state, switched=True, pause_reason=None, pause_message=""),
            "rollout.step",
            f"switched: production {stable} -> {state.candidate} ({reason})",
            actor,
        )
        return enter_step(state, SWITCHED, now), actions

    def on_result(self, state: RolloutState, run: AnalysisRun, now: float) -> Result:
        what = "pre-promotion" if run.role == "prePromotion" else "post-promotion"
        return judge(state, run, now, self, f"{what} analysis run {run.name}")

    def promote(
        self, state: RolloutState, now: float, *, actor: str, reason: str, full: bool
    ) -> Result:
        why = reason or f"promoted by {actor}"
        actions: list[Action] = []
        if state.step_index == PREVIEW:
            state, actions = self._switch(state, now, actor=actor, reason=why)
            if not full:
                return state, actions
        state, done = finish(state, now, actor=actor, reason=why, actions=[])
        return state, actions + done

    def resume(self, state: RolloutState, now: float, *, actor: str) -> Result:
        if state.step_index == PREVIEW:
            return self._switch(state, now, actor=actor, reason=f"resumed by {actor}")
        return finish(
            state,
            now,
            actor=actor,
            reason=f"Inconclusive post-promotion analysis accepted by {actor}",
            actions=[],
        )

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        text = f"rollout {state.name} {reason}"
        clear = Action("clearTraffic", actor=actor, reason=text)
        if state.switched:
            return [Action("revertAlias", actor=actor, reason=text), clear]
        return [clear]
