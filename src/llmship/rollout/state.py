"""The persisted state of one rollout, and what the state machine hands the controller.

A rollout is a :class:`RolloutState`: what is fixed when it starts (the spec, the
candidate, the stable release at start) and what moves (phase, step, pauses,
analysis runs, the weight the candidate should have). The state machine
(``machine.py``) maps ``state + event -> new state + actions``; the controller
persists the new state, with the actions still to run, *before* it runs them, so
a controller killed at any moment resumes exactly where it was.

Times are seconds on the controller's clock (``time.time()`` in production, an
injected clock in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal

from llmship.analysis.phases import Phase
from llmship.rollout.spec import RolloutSpec, parse_rollout

__all__ = [
    "Action",
    "ActionKind",
    "AnalysisRun",
    "Note",
    "PauseReason",
    "RolloutPhase",
    "RolloutState",
    "RunRole",
]


class RolloutPhase(str, Enum):
    """Where a rollout is (Argo Rollouts' phases; Argo's Degraded-after-abort is Aborted)."""

    PENDING = "Pending"
    """Recorded by ``llmship rollout start``; the controller has not started it yet."""
    PROGRESSING = "Progressing"
    """Moving through its steps."""
    PAUSED = "Paused"
    """Waiting: a pause step, a person (``pause: {}``, blue-green without automatic
    promotion), an Inconclusive analysis, or ``llmship rollout pause``."""
    HEALTHY = "Healthy"
    """Promoted: the candidate is the ``production`` release (terminal)."""
    ABORTED = "Aborted"
    """All traffic back on stable (terminal; ``llmship rollout retry`` starts it again)."""

    @property
    def is_terminal(self) -> bool:
        """True for Healthy and Aborted: the controller does nothing more."""
        return self in (RolloutPhase.HEALTHY, RolloutPhase.ABORTED)

    def __str__(self) -> str:
        return self.value


class PauseReason(str, Enum):
    """Why the machine waits (a person's ``pause`` is tracked apart, as ``manual_pause``)."""

    CANARY_PAUSE_STEP = "CanaryPauseStep"
    """A canary ``pause`` step: until its duration is over, or (``pause: {}``) until
    promoted or resumed."""
    BLUE_GREEN_PAUSE = "BlueGreenPause"
    """Blue-green with ``autoPromotionEnabled: false``: waits in preview for a person."""
    INCONCLUSIVE = "InconclusiveAnalysis"
    """An analysis run (or an experiment's decision) ended Inconclusive."""

    def __str__(self) -> str:
        return self.value


RunRole = Literal[
    "step", "background", "prePromotion", "postPromotion", "guard", "shadow", "decision"
]
"""What an analysis run is for; ``decision`` is an experiment's significance test."""


@dataclass(frozen=True)
class AnalysisRun:
    """One analysis run of a rollout; its measurements are stored in the registry."""

    name: str
    """Unique within the rollout, e.g. ``background.1``, ``step2.3``."""
    role: RunRole
    ref: str
    """Where its analysis is in the spec (``strategy.canary.analysis``); ``""`` for a
    decision."""
    started_at: float
    phase: Phase = Phase.RUNNING
    message: str = ""
    finished_at: float | None = None
    terminating: bool = False
    """The machine asked for its final verdict now (a shadow's duration is over): the
    controller assesses it as Argo does for a terminated run."""
    step: int | None = None
    """The canary step it belongs to (``role == "step"``)."""

    @property
    def live(self) -> bool:
        """Still measuring or waiting for its verdict."""
        return not self.phase.completed

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the state JSON."""
        return {
            "name": self.name,
            "role": self.role,
            "ref": self.ref,
            "started_at": self.started_at,
            "phase": self.phase.value,
            "message": self.message,
            "finished_at": self.finished_at,
            "terminating": self.terminating,
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisRun:
        """The inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            role=data["role"],
            ref=str(data.get("ref") or ""),
            started_at=float(data["started_at"]),
            phase=Phase(data.get("phase", Phase.RUNNING.value)),
            message=str(data.get("message") or ""),
            finished_at=_opt_float(data.get("finished_at")),
            terminating=bool(data.get("terminating", False)),
            step=None if data.get("step") is None else int(data["step"]),
        )


ActionKind = Literal[
    "setWeight",
    "setPreview",
    "setExperiment",
    "setShadow",
    "promoteAlias",
    "promotePreview",
    "revertAlias",
    "clearTraffic",
    "startAnalysis",
    "stopAnalysis",
]


@dataclass(frozen=True)
class Action:
    """Something the controller does to the world after persisting a transition.

    Every action is idempotent: doing it again when it is already done changes
    nothing (setting the weight that is set, moving an alias where it points).

    - ``setWeight``: the canary gets ``value`` percent of the requests;
    - ``setPreview``: the candidate answers the preview route;
    - ``setExperiment``: the spec's A/B variants over stable and candidate;
    - ``setShadow``: ``value`` percent of requests mirrored to the candidate;
    - ``promoteAlias``: ``production`` moves to the candidate;
    - ``promotePreview``: blue-green switch (alias and preview in one transaction);
    - ``revertAlias``: ``production`` moves back to the stable release at start;
    - ``clearTraffic``: the candidate leaves the traffic policy in one write
      (canary weight 0: all requests on stable at once);
    - ``startAnalysis``/``stopAnalysis``: bookkeeping of the run ``run``.
    """

    kind: ActionKind
    value: float | None = None
    run: str | None = None
    actor: str = "controller"
    """Who caused it (the controller, or the person whose intent it carries out)."""
    reason: str = ""
    """Why, for the traffic events and the alias history."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the state JSON."""
        return {
            "kind": self.kind,
            "value": self.value,
            "run": self.run,
            "actor": self.actor,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Action:
        """The inverse of :meth:`to_dict`."""
        return cls(
            kind=data["kind"],
            value=_opt_float(data.get("value")),
            run=data.get("run"),
            actor=str(data.get("actor") or "controller"),
            reason=str(data.get("reason") or ""),
        )

    def describe(self) -> str:
        """Short text, e.g. ``setWeight 20``."""
        if self.value is not None:
            return f"{self.kind} {self.value:g}"
        return f"{self.kind} {self.run}" if self.run else self.kind


@dataclass(frozen=True)
class Note:
    """One transition worth an event: ``kind`` (``rollout.step``, ...), who and what."""

    kind: str
    message: str
    actor: str = "controller"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "actor": self.actor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Note:
        return cls(str(data["kind"]), str(data["message"]), str(data.get("actor") or ""))


@dataclass(frozen=True)
class RolloutState:
    """Everything the state machine knows about one rollout."""

    env: str
    name: str
    spec: RolloutSpec
    candidate: str
    """``NAME@VERSION`` of the release rolled out."""
    stable: str | None
    """``NAME@VERSION`` of the production release when the rollout started."""
    rollout_id: int = 0

    phase: RolloutPhase = RolloutPhase.PENDING
    step_index: int = 0
    """Canary: the index of the current step (``len(steps)`` once all are done). Other
    strategies: their stage (blue-green 0 preview, 1 switched; experiment 0 running,
    1 deciding; shadow 0 mirroring, 1 verdict)."""
    step_started_at: float | None = None
    """When the current step was entered."""
    step_paused_s: float = 0.0
    """Seconds of ``rollout pause`` inside the current step: step timers leave them out."""
    step_applied: bool = False
    """The current step's traffic change was handed to the controller (it waits no more
    for the candidate to be ready)."""
    pause_reason: PauseReason | None = None
    pause_message: str = ""
    manual_pause: bool = False
    """A person paused the rollout (``llmship rollout pause``)."""
    manual_paused_at: float | None = None
    candidate_ready: bool = False
    """The candidate had a live model server at the last tick."""
    blocked_since: float | None = None
    """Since when the current step cannot proceed (no ready candidate, a traffic change
    that keeps failing); the progress deadline counts from here, pauses left out."""
    blocked_reason: str = ""
    weight: float = 0.0
    """The candidate's share of the requests (canary), as last asked of the controller."""
    switched: bool = False
    """Blue-green: ``production`` was switched to the candidate."""
    attempt: int = 1
    run_seq: int = 0
    runs: tuple[AnalysisRun, ...] = ()
    abort_reason: str | None = None
    message: str = ""
    """The last transition, for people."""
    started_at: float | None = None
    finished_at: float | None = None
    pending: tuple[Action, ...] = ()
    """Actions persisted with the state and not yet confirmed done (the outbox)."""
    notes: tuple[Note, ...] = field(default=(), compare=False)
    """Transitions made by the last :func:`~llmship.rollout.machine.step` (not stored)."""

    # -- derived ----------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        """``canary``, ``blueGreen``, ``experiment`` or ``shadow``."""
        return self.spec.strategy.kind

    @property
    def paused(self) -> bool:
        """Waiting for a timer, a person or ``resume``."""
        return self.manual_pause or self.pause_reason is not None

    def run(self, name: str) -> AnalysisRun | None:
        """The run ``name`` of this rollout, or None."""
        return next((r for r in self.runs if r.name == name), None)

    def live_runs(self) -> tuple[AnalysisRun, ...]:
        """Runs still measuring or waiting for a verdict."""
        return tuple(r for r in self.runs if r.live)

    def latest_run(self, role: str, step: int | None = None) -> AnalysisRun | None:
        """The newest run of ``role`` (of canary step ``step`` when given), or None."""
        runs = [r for r in self.runs if r.role == role and (step is None or r.step == step)]
        return runs[-1] if runs else None

    def step_elapsed(self, now: float) -> float:
        """Seconds in the current step, without the time a person had it paused."""
        if self.step_started_at is None:
            return 0.0
        paused = self.step_paused_s
        if self.manual_pause and self.manual_paused_at is not None:
            paused += max(0.0, now - self.manual_paused_at)
        return max(0.0, now - self.step_started_at - paused)

    # -- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The moving part as plain data (the state JSON); the fixed part has columns."""
        return {
            "phase": self.phase.value,
            "step_index": self.step_index,
            "step_started_at": self.step_started_at,
            "step_paused_s": self.step_paused_s,
            "step_applied": self.step_applied,
            "pause_reason": self.pause_reason.value if self.pause_reason else None,
            "pause_message": self.pause_message,
            "manual_pause": self.manual_pause,
            "manual_paused_at": self.manual_paused_at,
            "candidate_ready": self.candidate_ready,
            "blocked_since": self.blocked_since,
            "blocked_reason": self.blocked_reason,
            "weight": self.weight,
            "switched": self.switched,
            "attempt": self.attempt,
            "run_seq": self.run_seq,
            "runs": [r.to_dict() for r in self.runs],
            "abort_reason": self.abort_reason,
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "pending": [a.to_dict() for a in self.pending],
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        env: str,
        name: str,
        spec: RolloutSpec | dict[str, Any],
        candidate: str,
        stable: str | None,
        rollout_id: int = 0,
    ) -> RolloutState:
        """The state stored as :meth:`to_dict` plus the fixed part."""
        if not isinstance(spec, RolloutSpec):
            spec = parse_rollout(spec, source=f"rollout {name}")
        reason = data.get("pause_reason")
        return cls(
            env=env,
            name=name,
            spec=spec,
            candidate=candidate,
            stable=stable,
            rollout_id=rollout_id,
            phase=RolloutPhase(data.get("phase", RolloutPhase.PENDING.value)),
            step_index=int(data.get("step_index", 0)),
            step_started_at=_opt_float(data.get("step_started_at")),
            step_paused_s=float(data.get("step_paused_s", 0.0)),
            step_applied=bool(data.get("step_applied", False)),
            pause_reason=PauseReason(reason) if reason else None,
            pause_message=str(data.get("pause_message") or ""),
            manual_pause=bool(data.get("manual_pause", False)),
            manual_paused_at=_opt_float(data.get("manual_paused_at")),
            candidate_ready=bool(data.get("candidate_ready", False)),
            blocked_since=_opt_float(data.get("blocked_since")),
            blocked_reason=str(data.get("blocked_reason") or ""),
            weight=float(data.get("weight", 0.0)),
            switched=bool(data.get("switched", False)),
            attempt=int(data.get("attempt", 1)),
            run_seq=int(data.get("run_seq", 0)),
            runs=tuple(AnalysisRun.from_dict(r) for r in data.get("runs") or []),
            abort_reason=data.get("abort_reason"),
            message=str(data.get("message") or ""),
            started_at=_opt_float(data.get("started_at")),
            finished_at=_opt_float(data.get("finished_at")),
            pending=tuple(Action.from_dict(a) for a in data.get("pending") or []),
        )

    def without_notes(self) -> RolloutState:
        """This state with ``notes`` emptied."""
        return replace(self, notes=()) if self.notes else self


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
