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
from llmship.rollout.transitions import (
    Result,
    abort,
    enter_step,
    finish,
    note,
    pause_for,
    start_run,
    stop_runs,
)

__all__ = ["PREVIEW", "SWITCHED", "BlueGreen"]

PREVIEW = 0
SWITCHED = 1
PRE = "strategy.blueGreen.prePromotionAnalysis"
POST = "strategy.blueGreen.postPromotionAnalysis"


def _strategy(state: RolloutState) -> BlueGreenStrategy:
    strategy = state.spec.strategy.blue_green
    if strategy is None:  # pragma: no cover - the machine picks this module by kind
        raise TypeError("not a blue-green rollout")
    return strategy


class BlueGreen:
    """The blue-green strategy's part of the state machine."""

    def progress(self, state: RolloutState, now: float) -> Result:
        strategy = _strategy(state)
        actions: list[Action] = []
        while not state.phase.is_terminal and not state.paused:
            if state.step_index == PREVIEW:
                if not state.step_applied:
                    if not state.candidate_ready:
                        break
                    state, more = self._preview(state, now)
                    actions += more
                pre = state.latest_run("prePromotion")
                if pre is not None and pre.phase is not Phase.SUCCESSFUL:
                    break
                if not strategy.auto_promotion_enabled:
                    state = pause_for(
                        state,
                        PauseReason.BLUE_GREEN_PAUSE,
                        f"{state.candidate} waits in preview for `llmship rollout promote`",
                    )
                    break
                wait = float(strategy.auto_promotion_seconds or 0)
                if state.step_elapsed(now) < wait:
                    break
                state, more = self._switch(
                    state,
                    now,
                    actor="controller",
                    reason=f"automatic promotion after {format_duration(wait)} in preview",
                )
                actions += more
                continue
            if not state.step_applied:
                state = replace(state, step_applied=True)
                if strategy.post_promotion_analysis is not None:
                    state, more = start_run(state, "postPromotion", POST, now)
                    actions += more
            post = state.latest_run("postPromotion")
            if post is not None and post.phase is not Phase.SUCCESSFUL:
                break
            why = "post-promotion analysis passed" if post is not None else "switched"
            state, done = finish(state, now, actor="controller", reason=why, actions=[])
            return state, actions + done
        return state, actions

    def _preview(self, state: RolloutState, now: float) -> Result:
        actions = [
            Action(
                "setPreview", reason=f"rollout {state.name}: {state.candidate} on the preview route"
            )
        ]
        state = note(
            replace(state, step_applied=True, step_started_at=now, step_paused_s=0.0),
            "rollout.step",
            f"preview: {state.candidate} answers requests sent with X-Llmship-Variant: preview",
        )
        if _strategy(state).pre_promotion_analysis is not None:
            state, more = start_run(state, "prePromotion", PRE, now)
            actions += more
        return state, actions

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
        if run.phase in (Phase.FAILED, Phase.ERROR):
            reason = f"{what} analysis run {run.name} ended {run.phase}: {run.message}"
            return abort(state, now, self, actor="controller", reason=reason)
        if run.phase is Phase.INCONCLUSIVE:
            message = f"{what} analysis run {run.name} is Inconclusive ({run.message})"
            return pause_for(state, PauseReason.INCONCLUSIVE, message + "; promote or abort"), []
        return state, []

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

    def blocked(self, state: RolloutState) -> str | None:
        if state.step_index == PREVIEW and not state.step_applied and not state.candidate_ready:
            return f"the candidate {state.candidate} has no ready model server"
        return None

    def abort_actions(self, state: RolloutState, *, actor: str, reason: str) -> list[Action]:
        text = f"rollout {state.name} {reason}"
        clear = Action("clearTraffic", actor=actor, reason=text)
        if state.switched:
            return [Action("revertAlias", actor=actor, reason=text), clear]
        return [clear]

    def describe(self, state: RolloutState) -> str:
        if state.step_index == PREVIEW:
            return "stage 1/2: preview"
        return "stage 2/2: switched (post-promotion)"
