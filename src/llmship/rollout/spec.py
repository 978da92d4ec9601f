"""Rollout specs: how a candidate release replaces the stable one (``rollouts/*.yaml``).

The shape follows Argo Rollouts' ``spec.strategy`` and ``AnalysisTemplate``::

    name: chat-canary
    progressDeadline: 10m
    strategy:
      canary:
        steps:
          - setWeight: 20
          - pause: {duration: 10s}          # `pause: {}` waits for a person
          - analysis: {templates: [{templateName: errors}]}
          - setWeight: 100
        analysis:                           # background analysis
          templates: [{templateName: errors}]
    analysisTemplates:
      - name: errors
        metrics:
          - name: error-rate
            interval: 5s
            count: 3
            successCondition: result <= 0.05
            provider: {builtin: {metric: error_rate, window: 30s}}

Exactly one strategy: ``canary``, ``blueGreen``, ``experiment`` or ``shadow``.
See docs/rollouts.md for every field.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from llmship.analysis.durations import Duration
from llmship.analysis.models import (
    AnalysisRef,
    AnalysisRunSpec,
    AnalysisTemplate,
    SpecModel,
    check_name,
    resolve_analysis,
)
from llmship.analysis.stats import BUILTIN_METRICS
from llmship.errors import SpecError
from llmship.routing.policy import RESERVED_VARIANTS, VARIANT_NAME

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

StrategyKind = Literal["canary", "blueGreen", "experiment", "shadow"]
_STRATEGIES: tuple[tuple[str, StrategyKind], ...] = (
    ("canary", "canary"),
    ("blue_green", "blueGreen"),
    ("experiment", "experiment"),
    ("shadow", "shadow"),
)
DEFAULT_PROGRESS_DEADLINE = 600.0
"""Seconds a rollout may spend without progress before it is aborted (10m, as Argo)."""


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError("must be longer than 0s")
    return value


class Pause(SpecModel):
    """Wait ``duration``; without one, wait until a person promotes or resumes."""

    duration: Duration | None = Field(None, description="How long (none: until promoted).")


class CanaryStep(SpecModel):
    """One canary step: exactly one of ``setWeight``, ``pause``, ``analysis``."""

    set_weight: int | None = Field(
        None, ge=0, le=100, description="Percent of traffic for the candidate."
    )
    pause: Pause | None = None
    analysis: AnalysisRef | None = Field(None, description="Run this analysis; block until done.")

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        given = [
            alias
            for alias, value in (
                ("setWeight", self.set_weight),
                ("pause", self.pause),
                ("analysis", self.analysis),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a step is exactly one of setWeight, pause or analysis"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> Literal["setWeight", "pause", "analysis"]:
        """Which kind of step this is."""
        if self.set_weight is not None:
            return "setWeight"
        return "pause" if self.pause is not None else "analysis"


class BackgroundAnalysis(AnalysisRef):
    """Analysis that runs alongside the canary steps until the rollout ends."""

    starting_step: int | None = Field(
        None, ge=0, description="Index of the step at which it starts (default: the first)."
    )


class CanaryStrategy(SpecModel):
    """Shift traffic to the candidate step by step."""

    steps: list[CanaryStep] = Field(min_length=1)
    analysis: BackgroundAnalysis | None = None

    @model_validator(mode="after")
    def _starting_step(self) -> CanaryStrategy:
        start = self.analysis.starting_step if self.analysis else None
        if start is not None and start >= len(self.steps):
            raise ValueError(
                f"analysis.startingStep ({start}) must index a step: 0 to {len(self.steps) - 1}"
            )
        return self


class BlueGreenStrategy(SpecModel):
    """Serve the candidate on the preview route, then switch all traffic at once."""

    auto_promotion_enabled: bool = Field(
        True, description="Switch without a person once the preview checks pass."
    )
    auto_promotion_seconds: int | None = Field(
        None, ge=0, description="Wait this long in preview before switching automatically."
    )
    pre_promotion_analysis: AnalysisRef | None = Field(
        None, description="Must pass before the switch."
    )
    post_promotion_analysis: AnalysisRef | None = Field(
        None, description="Runs after the switch; failure switches back."
    )
    scale_down_delay_seconds: int = Field(
        30, ge=0, description="Keep the old release running this long after the switch."
    )

    @model_validator(mode="after")
    def _promotion(self) -> BlueGreenStrategy:
        if not self.auto_promotion_enabled and self.auto_promotion_seconds is not None:
            raise ValueError(
                "autoPromotionSeconds needs autoPromotionEnabled: true "
                "(with false, a person promotes)"
            )
        return self


class ExperimentVariant(SpecModel):
    """One arm of an A/B experiment."""

    name: str
    weight: float = Field(ge=0, le=100, description="Percent of users.")
    release: Literal["stable", "candidate"] | None = Field(
        None, description="Which release it serves (default: first stable, second candidate)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(VARIANT_NAME, value) or value in RESERVED_VARIANTS:
            raise ValueError(
                "must be 1-32 letters, digits, '-' or '_' starting with a letter, and not "
                + ", ".join(sorted(RESERVED_VARIANTS))
            )
        return value


_DECISION_METRICS = [n for n, info in BUILTIN_METRICS.items() if info.comparable]


class ExperimentDecision(SpecModel):
    """How the experiment picks a winner: one builtin metric and a significance test."""

    metric: str = Field(description="A builtin metric with per-request samples.")
    higher_is_better: bool | None = Field(
        None, description="Direction of `metric` (default: the metric's own)."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level.")
    min_samples: int = Field(30, ge=1, description="Fewest samples per variant for a verdict.")

    @field_validator("metric")
    @classmethod
    def _comparable(cls, value: str) -> str:
        if value not in _DECISION_METRICS:
            raise ValueError("must be one of " + ", ".join(_DECISION_METRICS))
        return value

    @property
    def effective_higher_is_better(self) -> bool:
        """``higherIsBetter``, or the metric's own direction."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return BUILTIN_METRICS[self.metric].higher_is_better


class ExperimentStrategy(SpecModel):
    """Split users between stable and candidate for ``duration``, then decide by a test."""

    duration: Duration
    variants: list[ExperimentVariant]
    decision: ExperimentDecision
    analysis: AnalysisRef | None = Field(
        None, description="Guard analysis while the experiment runs."
    )

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        _positive(value)
        return value

    @model_validator(mode="after")
    def _variants(self) -> ExperimentStrategy:
        if len(self.variants) != 2:
            raise ValueError("variants: give exactly two, one for stable and one for candidate")
        names = [v.name for v in self.variants]
        if names[0] == names[1]:
            raise ValueError("variants: the two names must differ")
        total = sum(v.weight for v in self.variants)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"variants: weights add up to {total:g}, not 100")
        releases = self.releases()
        if releases[0] == releases[1]:
            raise ValueError("variants: one variant serves stable and the other candidate")
        return self

    def releases(self) -> tuple[str, str]:
        """Which release each variant serves, in order (``stable`` or ``candidate``)."""
        first, second = self.variants
        if first.release and second.release:
            return first.release, second.release
        if first.release:
            return first.release, "candidate" if first.release == "stable" else "stable"
        if second.release:
            return "candidate" if second.release == "stable" else "stable", second.release
        return "stable", "candidate"

    @property
    def stable_variant(self) -> ExperimentVariant:
        """The variant that serves the stable release."""
        return self.variants[self.releases().index("stable")]

    @property
    def candidate_variant(self) -> ExperimentVariant:
        """The variant that serves the candidate."""
        return self.variants[self.releases().index("candidate")]


class ShadowStrategy(SpecModel):
    """Mirror a share of requests to the candidate (clients never see its answers)."""

    percent: float = Field(gt=0, le=100, description="Percent of requests mirrored.")
    duration: Duration
    analysis: AnalysisRef

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        _positive(value)
        return value


class Strategy(SpecModel):
    """Exactly one of ``canary``, ``blueGreen``, ``experiment``, ``shadow``."""

    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None
    experiment: ExperimentStrategy | None = None
    shadow: ShadowStrategy | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        given = [alias for attr, alias in _STRATEGIES if getattr(self, attr) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one strategy: canary, blueGreen, experiment or shadow"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> StrategyKind:
        """Which strategy this is."""
        return next(alias for attr, alias in _STRATEGIES if getattr(self, attr) is not None)


class RolloutSpec(SpecModel):
    """How a candidate replaces the stable release, with the analysis that judges it."""

    name: str
    description: str | None = None
    progress_deadline: Duration = Field(
        DEFAULT_PROGRESS_DEADLINE,
        description="Abort when a step makes no progress for this long (default 10m).",
    )
    strategy: Strategy
    analysis_templates: list[AnalysisTemplate] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("progress_deadline")
    @classmethod
    def _positive_deadline(cls, value: float) -> float:
        _positive(value)
        return value

    @model_validator(mode="after")
    def _references(self) -> RolloutSpec:
        seen: set[str] = set()
        for i, template in enumerate(self.analysis_templates):
            if template.name in seen:
                raise ValueError(
                    f"analysisTemplates[{i}].name: two templates are named {template.name!r}"
                )
            seen.add(template.name)
        for path, ref in self.analysis_refs():
            try:
                resolve_analysis(ref, self.analysis_templates)
            except ValueError as exc:
                raise ValueError(f"{path}.{exc}") from None
        return self

    def analysis_refs(self) -> Iterator[tuple[str, AnalysisRef]]:
        """Every analysis reference with its path in the file (``strategy.canary.analysis``)."""
        s = self.strategy
        if s.canary:
            for i, step in enumerate(s.canary.steps):
                if step.analysis:
                    yield f"strategy.canary.steps[{i}].analysis", step.analysis
            if s.canary.analysis:
                yield "strategy.canary.analysis", s.canary.analysis
        if s.blue_green:
            if s.blue_green.pre_promotion_analysis:
                yield "strategy.blueGreen.prePromotionAnalysis", s.blue_green.pre_promotion_analysis
            if s.blue_green.post_promotion_analysis:
                yield (
                    "strategy.blueGreen.postPromotionAnalysis",
                    s.blue_green.post_promotion_analysis,
                )
        if s.experiment and s.experiment.analysis:
            yield "strategy.experiment.analysis", s.experiment.analysis
        if s.shadow:
            yield "strategy.shadow.analysis", s.shadow.analysis

    def resolve(self, ref: AnalysisRef) -> AnalysisRunSpec:
        """The metrics and arguments of one of this spec's analysis references."""
        return resolve_analysis(ref, self.analysis_templates)

    def template(self, name: str) -> AnalysisTemplate:
        """The analysis template ``name``; KeyError when there is none."""
        for template in self.analysis_templates:
            if template.name == name:
                return template
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file's own shape (camelCase, durations as text);
        :func:`parse_rollout` reads it back to an equal spec."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_yaml(self) -> str:
        """The spec as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal digests mean equal content."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# -- errors that name the field ------------------------------------------------------


def _unwrap(annotation: Any, *, item: bool) -> Any:
    """The model type inside ``annotation`` (through Optional, Annotated and, with
    ``item``, a list)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return None
            annotation = rest[0]
        elif item and origin is list:
            annotation = get_args(annotation)[0]
            item = False
        else:
            return annotation


def _allowed_fields(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The YAML field names allowed at ``loc`` (the location of the unknown field's parent)."""
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            current = _unwrap(current, item=True)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        for name, field in current.model_fields.items():
            if (field.alias or name) == part:
                current = _unwrap(field.annotation, item=False)
                break
        else:
            return []
    current = _unwrap(current, item=True)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _where(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(RolloutSpec, loc[:-1])
            msg = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        elif err["type"] == "missing":
            msg = "required"
        elif err["type"] == "model_type":
            msg = "must be a mapping of fields (see docs/rollouts.md)"
        lines.append(f"{_where(loc)}: {msg}" if loc else msg)
    return "; ".join(lines)


def parse_rollout(data: Any, *, source: str = "rollout") -> RolloutSpec:
    """Validate plain data as a rollout spec; SpecError ``source: field.path: what is allowed``."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a rollout spec must be a mapping with name, strategy and "
            "analysisTemplates (see docs/rollouts.md)"
        )
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from exc


def load_rollout(path: str | Path) -> RolloutSpec:
    """Read and validate a rollout spec from a YAML (or JSON) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rollout(data, source=str(path))
