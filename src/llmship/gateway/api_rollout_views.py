"""The dashboard's wire models for rollouts and environments, and the conversions from
registry records to them (shared by ``api_rollouts.py`` and ``api_overview.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from llmship.gateway.api_common import RecordView
from llmship.registry import MeasurementRecord, ReleaseRecord, RolloutRecord
from llmship.registry.records import Event
from llmship.routing.policy import TrafficPolicy

__all__ = [
    "ActionView",
    "EventView",
    "MeasurementView",
    "MetricView",
    "ReleaseBrief",
    "RolloutDetail",
    "RolloutSummary",
    "RunView",
    "StepView",
    "brief_of",
    "event_view",
    "iso",
    "measurement_view",
    "model_text",
    "summary_of",
    "weights_by_ref",
]


def iso(at: datetime | None) -> str | None:
    """``at`` as ISO-8601 (the registry's datetimes are UTC)."""
    return at.isoformat() if at is not None else None


class RolloutSummary(RecordView):
    """One rollout in a list."""

    id: int = Field(description="The rollout's id.")
    name: str = Field(description="The rollout spec's name.")
    env: str = Field(description="The environment it runs in.")
    strategy: str = Field(description="`canary`, `blueGreen`, `experiment` or `shadow`.")
    candidate: str = Field(description="NAME@VERSION rolled out.")
    stable: str | None = Field(description="NAME@VERSION of production when it started.")
    phase: str = Field(description="`Pending`, `Progressing`, `Paused`, `Healthy` or `Aborted`.")
    step_index: int = Field(description="The current step (canary) or stage (others), from 0.")
    paused: bool = Field(description="Waiting for a timer, a person or `resume`.")
    active: bool = Field(description="Not finished: it holds its environment.")
    created_at: str = Field(description="When it was started (ISO-8601, UTC).")
    created_by: str = Field(description="Who started it.")
    updated_at: str = Field(description="Its last change (ISO-8601, UTC).")


def summary_of(record: RolloutRecord) -> RolloutSummary:
    """The list view of a stored rollout."""
    return RolloutSummary.of(record)


class MetricView(BaseModel):
    """One metric of an analysis run: its condition and what was measured."""

    metric: str = Field(description="The metric's name in its analysis template.")
    condition: str | None = Field(
        None, description="Its successCondition / failureCondition, or how it is decided."
    )
    measurements: int = Field(description="How many measurements were taken.")
    phases: list[str] = Field(description="Each measurement's phase, oldest first.")
    last_value: Any = Field(None, description="The last measured value.")
    last_phase: str | None = Field(None, description="The last measurement's phase.")
    last_message: str = Field("", description="The last measurement's message.")
    at: str | None = Field(None, description="When the last measurement was taken.")


class RunView(BaseModel):
    """One analysis run of a rollout with its verdict so far."""

    name: str = Field(description="e.g. `background.1`, `step3.2`.")
    role: str = Field(description="`step`, `background`, `prePromotion`, ..., `decision`.")
    phase: str = Field(description="`Running`, `Successful`, `Failed`, `Error`, `Inconclusive`.")
    message: str = Field(description="Why it has its phase.")
    metrics: list[MetricView] = Field(description="Its metrics (those of its templates).")


class StepView(BaseModel):
    """One step (canary) or stage (the other strategies) of a rollout."""

    index: int = Field(description="From 0, as `step_index`.")
    kind: str = Field(description="`setWeight`, `pause`, `analysis`, or `stage`.")
    text: str = Field(description="In words, e.g. `weight 20%`, `pause 30s`.")
    state: Literal["done", "current", "pending"] = Field(description="Where the rollout is.")


class ActionView(BaseModel):
    """Whether an action applies to the rollout now, and why not."""

    action: Literal["promote", "pause", "resume", "abort", "retry", "undo"]
    allowed: bool = Field(description="Whether a request for it would be accepted now.")
    reason: str | None = Field(description="Why not (what the dashboard shows by the button).")
    detail: str | None = Field(None, description="What it would do, where that helps (undo).")


class RolloutDetail(RolloutSummary):
    """One rollout in full: what `llmship rollout status` shows, its steps and actions."""

    step: str = Field(description="The current step in words, e.g. `step 3/6: setWeight 50`.")
    attempt: int = Field(description="1, plus one per retry.")
    weight: float = Field(description="The candidate's share (percent) the machine asked for.")
    pause_reason: str | None = Field(description="Why it waits, when it does.")
    abort_reason: str | None = Field(description="Why it was aborted, when it was.")
    blocked: str | None = Field(description="Why the current step cannot go on, when it cannot.")
    message: str = Field(description="The last transition, for people.")
    traffic: dict[str, Any] | None = Field(description="The environment's traffic policy now.")
    weights: dict[str, float] | None = Field(
        description="Share of ordinary traffic (percent) per release, NAME@VERSION."
    )
    weights_by_role: dict[str, float] | None = Field(
        None, description="The same shares by role (`stable`, `canary`) or experiment variant."
    )
    runs: list[RunView] = Field(description="Its analysis runs, oldest first.")
    spec: dict[str, Any] = Field(description="The rollout spec (file shape).")
    steps: list[StepView] = Field(description="Its steps (canary) or stages, in order.")
    actions: list[ActionView] = Field(description="Each action, allowed or why not.")


class EventView(RecordView):
    """One recorded change: who did what, when."""

    id: int = Field(description="The event's id (grows with time).")
    at: str = Field(description="When (ISO-8601, UTC).")
    actor: str = Field(description="Who.")
    kind: str = Field(description="e.g. `rollout.step`, `alias.moved`, `traffic.changed`.")
    message: str = Field(description="What happened, in words.")
    data: dict[str, Any] = Field(description="Details.")


def event_view(event: Event) -> EventView:
    """The wire view of a registry event."""
    return EventView.of(event)


class MeasurementView(RecordView):
    """One measurement of one metric of one analysis run."""

    run: str = Field(description="The analysis run.")
    metric: str = Field(description="The metric.")
    phase: str = Field(description="`Successful`, `Failed`, `Inconclusive` or `Error`.")
    value: Any = Field(None, description="The measured value.")
    message: str = Field(description="What the provider said.")
    at: str = Field(description="When it was taken (ISO-8601, UTC).")


def measurement_view(m: MeasurementRecord) -> MeasurementView:
    """The wire view of a stored measurement."""
    return MeasurementView.of(m)


class ReleaseBrief(BaseModel):
    """A release in a few words."""

    ref: str = Field(description="NAME@VERSION.")
    name: str = Field(description="The release name.")
    version: str = Field(description="Its version.")
    backend: str = Field(description="`llamacpp` or `openai`.")
    model: str = Field(description="Where its weights are: package, path or upstream model.")


def model_text(release: ReleaseRecord) -> str:
    """The release's model in a few words: ``PACKAGE/FILE``, the path, or ``ID at URL``."""
    m = release.spec.model
    if m.package:
        return f"{m.package}/{m.file}" if m.file else m.package
    if m.path:
        return m.path
    return f"{m.id or '(default model)'} at {m.base_url}" if m.base_url else (m.id or "")


def brief_of(release: ReleaseRecord) -> ReleaseBrief:
    """The brief view of a registered release."""
    return ReleaseBrief(
        ref=release.ref,
        name=release.name,
        version=release.version,
        backend=release.backend,
        model=model_text(release),
    )


def weights_by_ref(policy: TrafficPolicy) -> dict[str, float]:
    """Share of ordinary traffic (percent) per release: the policy's weights by role or
    variant, keyed by the release that holds it (two variants of one release add up)."""
    held: list[tuple[str | None, float]]
    if policy.experiment:
        held = [(v.ref, v.weight) for v in policy.experiment.variants]
    else:
        held = [(policy.stable, 100.0 - (policy.canary_weight if policy.canary else 0.0))]
        if policy.canary:
            held.append((policy.canary, policy.canary_weight))
    weights: dict[str, float] = {}
    for ref, weight in held:
        if ref:
            weights[ref] = weights.get(ref, 0.0) + weight
    return weights
