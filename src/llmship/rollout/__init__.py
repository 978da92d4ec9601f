"""Rollouts: how a candidate release replaces the stable one.

- ``spec.py``: rollout specs (``rollouts/*.yaml``);
- ``state.py``, ``events.py``, ``machine.py`` and one module per strategy
  (``canary.py``, ``bluegreen.py``, ``experiment.py``, ``shadow.py``, the last
  three on the two-stage skeleton of ``strategy.py``): the pure state machine,
  ``step(state, event, now) -> (state, actions)``;
- ``controller.py`` (``Controller``): runs the machine against the registry and
  the gateway's statistics (``stats_http.GatewayStats``), carrying out the
  actions (``actions.py``); imported from there, since it needs the registry;
  it measures the analysis runs with ``measurements.py`` and reads and saves
  states with ``records.py``;
- ``ops.py``: what ``llmship rollout`` does (start, intents, undo, status).
"""

from llmship.rollout.events import TransitionError
from llmship.rollout.machine import check, describe, step
from llmship.rollout.spec import (
    BackgroundAnalysis,
    BlueGreenStrategy,
    CanaryStep,
    CanaryStrategy,
    ExperimentDecision,
    ExperimentStrategy,
    ExperimentVariant,
    Pause,
    RolloutSpec,
    ShadowStrategy,
    Strategy,
    StrategyKind,
    load_rollout,
    parse_rollout,
)
from llmship.rollout.state import (
    Action,
    AnalysisRun,
    Note,
    PauseReason,
    RolloutPhase,
    RolloutState,
)

__all__ = [
    "Action",
    "AnalysisRun",
    "BackgroundAnalysis",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "ExperimentDecision",
    "ExperimentStrategy",
    "ExperimentVariant",
    "Note",
    "Pause",
    "PauseReason",
    "RolloutPhase",
    "RolloutSpec",
    "RolloutState",
    "ShadowStrategy",
    "Strategy",
    "StrategyKind",
    "TransitionError",
    "check",
    "describe",
    "load_rollout",
    "parse_rollout",
    "step",
]
