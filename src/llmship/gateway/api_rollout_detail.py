"""One rollout in full for the dashboard: ``ops.status`` plus its steps, each metric's
condition, and which actions apply now and why not.

Blocking (it reads the registry): call :func:`rollout_detail` in a thread. Whether an
action applies is decided as ``llmship rollout ...`` decides it: the intent's event is
checked against the rollout as it will be once the intents already waiting are
applied; the :class:`TransitionError` it raises is the reason shown by the button.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from llmship.analysis.durations import format_duration
from llmship.analysis.models import Metric
from llmship.errors import LlmshipError
from llmship.gateway.api_rollout_views import (
    ActionView,
    RolloutDetail,
    StepView,
    weights_by_ref,
)
from llmship.registry import Registry, RolloutRecord
from llmship.rollout import ops
from llmship.rollout.actions import PRODUCTION
from llmship.rollout.events import Retry, TransitionError, intent_event
from llmship.rollout.machine import check, machine_for, step
from llmship.rollout.records import state_of
from llmship.rollout.spec import CanaryStep
from llmship.rollout.state import RolloutPhase, RolloutState
from llmship.rollout.strategy import TwoStage

__all__ = ["ACTIONS", "action_reason", "expected_state", "rollout_detail", "steps_of"]

ACTIONS = ("promote", "pause", "resume", "abort", "retry", "undo")
"""What the dashboard can ask of a rollout, in the order of its buttons."""


def rollout_detail(registry: Registry, record: RolloutRecord) -> RolloutDetail:
    """Everything the dashboard shows of one rollout (reads the registry: blocking)."""
    policy = registry.get_traffic(record.env)
    data = ops.status(record, policy, registry.list_measurements(record.id))
    state = state_of(record)
    conditions = dict(_conditions(state))
    for run, found in zip(state.runs, data["runs"], strict=True):
        _complete_metrics(run.name, run.ref, found["metrics"], conditions)
    data.update(
        active=record.active,
        spec=record.spec,
        steps=steps_of(state),
        actions=actions_of(registry, record),
        weights=weights_by_ref(policy),
        weights_by_role=data["weights"],
    )
    return RolloutDetail.model_validate(data)


# -- steps ----------------------------------------------------------------------------


def steps_of(state: RolloutState) -> list[StepView]:
    """The canary's steps, or the stages of the other strategies, each done, current or
    pending (all done once promoted; all pending before the controller starts it)."""
    canary = state.spec.strategy.canary
    if canary is not None:
        described: list[tuple[str, str]] = [(s.kind, _step_text(s)) for s in canary.steps]
    else:
        machine = machine_for(state)
        stages = machine.stages if isinstance(machine, TwoStage) else ()
        described = [("stage", _stage_text(state, i, text)) for i, text in enumerate(stages)]
    views = []
    for index, (kind, text) in enumerate(described):
        if state.phase is RolloutPhase.HEALTHY or index < state.step_index:
            where = "done"
        elif index == state.step_index and state.phase is not RolloutPhase.PENDING:
            where = "current"
        else:
            where = "pending"
        views.append(StepView(index=index, kind=kind, text=text, state=where))
    return views


def _step_text(s: CanaryStep) -> str:
    if s.set_weight is not None:
        return f"weight {s.set_weight}%"
    if s.pause is not None:
        duration = s.pause.duration
        return "pause until promoted" if duration is None else f"pause {format_duration(duration)}"
    names = ", ".join(t.template_name for t in s.analysis.templates) if s.analysis else ""
    return f"analysis {names}"


def _stage_text(state: RolloutState, index: int, name: str) -> str:
    """A two-stage strategy's stage, with what the spec says of it."""
    s = state.spec.strategy
    extra = ""
    if s.blue_green is not None:
        if index == 0:
            wait = "then switch" if s.blue_green.auto_promotion_enabled else "wait for promotion"
            pre = " with pre-promotion analysis" if s.blue_green.pre_promotion_analysis else ""
            extra = f": {state.candidate} on the preview route{pre}, {wait}"
        else:
            post = ", post-promotion analysis" if s.blue_green.post_promotion_analysis else ""
            extra = f": production on {state.candidate}{post}"
    elif s.experiment is not None:
        if index == 0:
            arms = ", ".join(f"{v.name} {v.weight:g}%" for v in s.experiment.variants)
            extra = f" for {format_duration(s.experiment.duration)} ({arms})"
        else:
            extra = f" on {s.experiment.decision.metric}"
    elif s.shadow is not None and index == 0:
        extra = f" {s.shadow.percent:g}% of requests for {format_duration(s.shadow.duration)}"
    return name + extra


# -- conditions -----------------------------------------------------------------------


def _conditions(state: RolloutState) -> Iterator[tuple[tuple[str, str], str | None]]:
    """``((analysis ref, metric), condition text)`` for every metric of the spec's
    analyses; an experiment's decision is under ref ``""``."""
    spec = state.spec
    for ref, analysis in spec.analysis_refs():
        try:
            metrics = spec.resolve(analysis).metrics
        except ValueError:  # pragma: no cover - a stored spec was valid when started
            continue
        for metric in metrics:
            yield (ref, metric.name), condition_text(metric)
    experiment = spec.strategy.experiment
    if experiment is not None:
        d = experiment.decision
        better = "higher" if d.effective_higher_is_better else "lower"
        yield (
            ("", d.metric),
            f"the candidate's {d.metric} significantly {better} (alpha {d.alpha:g})",
        )


def condition_text(metric: Metric) -> str | None:
    """``success: result <= 0.05; failure: ...``, how a compared metric is decided, or None."""
    builtin = metric.provider.builtin
    if builtin is not None and builtin.compare:
        return f"not significantly worse than {builtin.compare} (alpha {builtin.alpha:g})"
    parts = []
    if metric.success_condition:
        parts.append(f"success: {metric.success_condition}")
    if metric.failure_condition:
        parts.append(f"failure: {metric.failure_condition}")
    return "; ".join(parts) or None


def _complete_metrics(
    run: str,
    ref: str,
    metrics: list[dict[str, Any]],
    conditions: dict[tuple[str, str], str | None],
) -> None:
    """Give each measured metric of ``run`` its condition, and list the spec's metrics
    not measured yet (zero measurements)."""
    measured = {m["metric"] for m in metrics}
    for m in metrics:
        m["condition"] = conditions.get((ref, m["metric"]))
    for (where, name), text in conditions.items():
        if where == ref and name not in measured:
            metrics.append({"metric": name, "condition": text, "measurements": 0, "phases": []})


# -- actions --------------------------------------------------------------------------


def expected_state(registry: Registry, record: RolloutRecord) -> RolloutState:
    """The rollout as it will be once the intents waiting for the controller (those that
    apply) are applied: what a new request is checked against (as ``ops.request``)."""
    state = state_of(record)
    now = time.time()
    for intent in registry.pending_rollout_intents(record.id):
        try:
            state, _ = step(state, intent_event(intent.kind, actor=intent.actor), now)
        except TransitionError:
            continue
    return state


def action_reason(message: str, record: RolloutRecord) -> str:
    """A refusal in the dashboard's words: ``This rollout is ...`` rather than the CLI's
    ``rollout NAME (id N) is ...``, and the CLI's flags named as the dashboard's buttons."""
    prefix = f"rollout {record.name} (id {record.id}) "
    if message.startswith(prefix):
        message = "This rollout " + message.removeprefix(prefix)
    return (
        message.replace("promote in full with `--full`", "promote in full")
        .replace("resume it with `rollout resume`", "resume it")
        .replace("`llmship rollout promote` skips it", "Promote skips it")
    )


def actions_of(registry: Registry, record: RolloutRecord) -> list[ActionView]:
    """Each action of the dashboard, allowed or why not."""
    expected = expected_state(registry, record)
    active = registry.active_rollout(record.env)
    views = []
    for action in ACTIONS:
        if action == "undo":
            views.append(_undo_view(registry, record, active))
            continue
        event = intent_event(action, actor="dashboard")
        reason = None
        try:
            check(expected, event)
            if isinstance(event, Retry) and active is not None and active.id != record.id:
                reason = (
                    f"rollout {active.name} (id {active.id}) is {active.phase} in "
                    f"{record.env}: one rollout runs at a time"
                )
        except TransitionError as exc:
            reason = action_reason(exc.message, record)
        views.append(ActionView(action=action, allowed=reason is None, reason=reason))
    return views


def _undo_view(
    registry: Registry, record: RolloutRecord, active: RolloutRecord | None
) -> ActionView:
    """Undo moves production of the rollout's environment back (``llmship rollout undo``):
    refused while a rollout runs there, or when production has no earlier release."""
    env = record.env
    if active is not None:
        who = (
            "This rollout" if active.id == record.id else f"Rollout {active.name} (id {active.id})"
        )
        reason = (
            f"{who} is {active.phase} in {env}: abort it instead, which puts all traffic on stable"
        )
        return ActionView(action="undo", allowed=False, reason=reason)
    history = registry.alias_history(env, PRODUCTION)
    try:
        target = ops.rollback_target(history, env)
    except LlmshipError as exc:
        return ActionView(action="undo", allowed=False, reason=exc.message)
    detail = f"production in {env} moves from {history[-1].to_ref} back to {target}"
    return ActionView(action="undo", allowed=True, reason=None, detail=detail)
