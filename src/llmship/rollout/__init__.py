"""Rollouts: how a candidate release replaces the stable one (specs in ``rollouts/*.yaml``)."""

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

__all__ = [
    "BackgroundAnalysis",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "ExperimentDecision",
    "ExperimentStrategy",
    "ExperimentVariant",
    "Pause",
    "RolloutSpec",
    "ShadowStrategy",
    "Strategy",
    "StrategyKind",
    "load_rollout",
    "parse_rollout",
]
