"""What can happen to a rollout: the events the state machine takes.

The controller makes a :class:`Tick` on every pass and an :class:`AnalysisResult`
when a run has its verdict; people (through ``llmship rollout ...``) and alerts
cause the others, which the registry keeps as intents until the controller
applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmship.analysis.phases import Phase
from llmship.errors import ConflictError

__all__ = [
    "Abort",
    "AnalysisResult",
    "IntentKind",
    "Pause",
    "Promote",
    "Resume",
    "Retry",
    "RolloutEvent",
    "Tick",
    "TransitionError",
    "intent_event",
]


class TransitionError(ConflictError):
    """The event does not apply to the rollout as it is (promoting a finished one, ...)."""


@dataclass(frozen=True)
class Tick:
    """Time passed: timers, readiness and the progress deadline are checked."""

    ready: bool = True
    """Whether the candidate has a live model server (an endpoint in the registry)."""
    failing: str | None = None
    """Why the actions of the last transition could not be carried out, if they could
    not (the rollout makes no progress meanwhile; the deadline counts)."""


@dataclass(frozen=True)
class AnalysisResult:
    """An analysis run has its verdict (Successful, Failed, Error or Inconclusive)."""

    run: str
    phase: Phase
    message: str = ""


@dataclass(frozen=True)
class Promote:
    """Skip the current step (``full``: every remaining step and analysis) and go on."""

    actor: str
    reason: str = ""
    full: bool = False


@dataclass(frozen=True)
class Pause:
    """A person holds the rollout where it is; step timers stop."""

    actor: str
    reason: str = ""


@dataclass(frozen=True)
class Resume:
    """Lift a person's pause, and continue past whatever waits for a person
    (``pause: {}``, a blue-green preview waiting for promotion, an Inconclusive
    analysis)."""

    actor: str
    reason: str = ""


@dataclass(frozen=True)
class Abort:
    """All traffic back to stable at once; the rollout ends Aborted."""

    actor: str
    reason: str = ""


@dataclass(frozen=True)
class Retry:
    """Start an Aborted rollout again from its first step (a new attempt)."""

    actor: str
    reason: str = ""


RolloutEvent = Tick | AnalysisResult | Promote | Pause | Resume | Abort | Retry

IntentKind = Literal["promote", "promoteFull", "pause", "resume", "abort", "retry"]
"""What a person or an alert can ask for (kept in the registry until applied)."""

INTENT_KINDS: tuple[IntentKind, ...] = (
    "promote",
    "promoteFull",
    "pause",
    "resume",
    "abort",
    "retry",
)


def intent_event(kind: str, *, actor: str, reason: str = "") -> RolloutEvent:
    """The event an intent stands for; ValueError for an unknown kind."""
    if kind == "promote":
        return Promote(actor, reason)
    if kind == "promoteFull":
        return Promote(actor, reason, full=True)
    if kind == "pause":
        return Pause(actor, reason)
    if kind == "resume":
        return Resume(actor, reason)
    if kind == "abort":
        return Abort(actor, reason)
    if kind == "retry":
        return Retry(actor, reason)
    raise ValueError(f"unknown rollout intent {kind!r}; known: {', '.join(INTENT_KINDS)}")
