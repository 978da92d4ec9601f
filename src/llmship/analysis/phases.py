"""Verdicts: measurement -> metric -> run phases, with Argo Rollouts' rules, as pure functions.

- :func:`assess_measurement` scores one value against a metric's conditions
  (Argo's ``evaluate.EvaluateResult``).
- :func:`assess_metric` decides a metric from its measurements and limits
  (Argo's ``assessMetricStatus``).
- :func:`assess_run` combines the metrics of one analysis (Argo's
  ``assessRunStatus``): the worst phase wins.
- :func:`verdict` says what the rollout does about a run's phase.
- :func:`next_measurement_at` says when a metric is measured next.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from llmship.analysis.expr import ConditionError, compile_condition
from llmship.analysis.models import Metric

__all__ = [
    "ERROR_RETRY_INTERVAL",
    "Measurement",
    "MetricPhase",
    "MetricTally",
    "Phase",
    "RunPhase",
    "Verdict",
    "assess_measurement",
    "assess_metric",
    "assess_metric_reason",
    "assess_run",
    "condition_error",
    "measurement_phase",
    "next_measurement_at",
    "tally",
    "verdict",
]

ERROR_RETRY_INTERVAL = 10.0
"""Seconds before a measurement that ended in Error is retried (Argo's default)."""


class Phase(str, Enum):
    """The phase of a measurement, a metric or a whole analysis run (Argo's names)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    ERROR = "Error"
    INCONCLUSIVE = "Inconclusive"

    @property
    def completed(self) -> bool:
        """True for Successful, Failed, Error and Inconclusive."""
        return self not in (Phase.PENDING, Phase.RUNNING)

    def __str__(self) -> str:
        return self.value


MetricPhase = Phase
"""The phase of one metric (a :class:`Phase`)."""
RunPhase = Phase
"""The phase of one analysis run (a :class:`Phase`)."""

_WORST_LAST = (
    Phase.SUCCESSFUL,
    Phase.RUNNING,
    Phase.PENDING,
    Phase.INCONCLUSIVE,
    Phase.ERROR,
    Phase.FAILED,
)
"""Argo's ``analysisStatusOrder``: best to worst."""


@dataclass(frozen=True)
class Measurement:
    """One observation of a metric.

    ``phase`` is None when the provider leaves the verdict to the metric's
    conditions (most do); a provider sets it when it decides itself: Error when
    the query failed, Inconclusive when there was no data, and the comparison
    mode's verdict.
    """

    value: Any
    phase: Phase | None = None
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON data for storage and the API: NaN and infinite values
        (also inside lists and mappings) are written as None."""
        return {
            "value": _json_safe(self.value),
            "phase": self.phase.value if self.phase else None,
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """The inverse of :meth:`to_dict` (a NaN value comes back as None)."""
        phase = data.get("phase")
        return cls(
            data.get("value"),
            Phase(phase) if phase else None,
            str(data.get("message") or ""),
            data.get("started_at"),
            data.get("finished_at"),
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def assess_measurement(value: Any, metric: Metric) -> Phase:
    """Score ``value`` against ``metric``'s conditions, exactly as Argo Rollouts does.

    - no conditions: Successful;
    - only a successCondition: Successful when true, else Failed;
    - only a failureCondition: Failed when true, else Successful;
    - both: Failed when the failure condition holds (whatever the success
      condition says), Successful when only the success condition holds,
      Inconclusive when neither does;
    - a condition that cannot be evaluated on ``value``: Error.
    """
    success = failure = False
    try:
        if metric.success_condition:
            success = compile_condition(metric.success_condition).evaluate(value)
        if metric.failure_condition:
            failure = compile_condition(metric.failure_condition).evaluate(value)
    except (ConditionError, RecursionError):
        return Phase.ERROR
    if not metric.success_condition and not metric.failure_condition:
        return Phase.SUCCESSFUL
    if not metric.failure_condition:
        failure = not success
    elif not metric.success_condition:
        success = not failure
    if failure:
        return Phase.FAILED
    if not success:
        return Phase.INCONCLUSIVE
    return Phase.SUCCESSFUL


def condition_error(value: Any, metric: Metric) -> str | None:
    """Why ``value`` cannot be scored against ``metric``'s conditions (None when it can)."""
    for text in (metric.success_condition, metric.failure_condition):
        if text:
            try:
                compile_condition(text).evaluate(value)
            except ConditionError as exc:
                return f"{text}: {exc}"
            except RecursionError:
                return f"{text}: nested too deeply"
    return None


def measurement_phase(measurement: Measurement, metric: Metric) -> Phase:
    """The measurement's own phase, or its value scored by :func:`assess_measurement`."""
    if measurement.phase is not None:
        return measurement.phase
    return assess_measurement(measurement.value, metric)


@dataclass(frozen=True)
class MetricTally:
    """Argo's per-metric counters, folded from the measurements in order."""

    count: int = 0
    """Completed measurements that were not Errors (Errors do not count towards ``count``)."""
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0

    def add(self, phase: Phase) -> MetricTally:
        """The counters after one more measurement of ``phase`` (in-flight ones change nothing)."""
        if phase == Phase.SUCCESSFUL:
            return replace(
                self,
                count=self.count + 1,
                successful=self.successful + 1,
                consecutive_error=0,
                consecutive_success=self.consecutive_success + 1,
            )
        if phase == Phase.FAILED:
            return replace(
                self,
                count=self.count + 1,
                failed=self.failed + 1,
                consecutive_error=0,
                consecutive_success=0,
            )
        if phase == Phase.INCONCLUSIVE:
            return replace(
                self,
                count=self.count + 1,
                inconclusive=self.inconclusive + 1,
                consecutive_error=0,
                consecutive_success=0,
            )
        if phase == Phase.ERROR:
            return replace(
                self,
                error=self.error + 1,
                consecutive_error=self.consecutive_error + 1,
                consecutive_success=0,
            )
        return self


def _phases(measurements: Iterable[Measurement | Phase], metric: Metric) -> list[Phase]:
    return [m if isinstance(m, Phase) else measurement_phase(m, metric) for m in measurements]


def tally(measurements: Iterable[Measurement | Phase], metric: Metric) -> MetricTally:
    """The counters of ``measurements`` (oldest first)."""
    result = MetricTally()
    for phase in _phases(measurements, metric):
        result = result.add(phase)
    return result


def _limits_phase(metric: Metric, counts: MetricTally) -> tuple[Phase | None, str]:
    """Argo's ``assessMetricFailureInconclusiveOrError``: the checks run in order and
    the last one that matches wins."""
    phase: Phase | None = None
    message = ""
    if metric.failure_limit >= 0 and counts.failed > metric.failure_limit:
        phase = Phase.FAILED
        message = f"failed ({counts.failed}) > failureLimit ({metric.failure_limit})"
    if counts.inconclusive > metric.inconclusive_limit:
        phase = Phase.INCONCLUSIVE
        message = (
            f"inconclusive ({counts.inconclusive}) > "
            f"inconclusiveLimit ({metric.inconclusive_limit})"
        )
    if counts.consecutive_error > metric.consecutive_error_limit:
        phase = Phase.ERROR
        message = (
            f"consecutiveErrors ({counts.consecutive_error}) > "
            f"consecutiveErrorLimit ({metric.consecutive_error_limit})"
        )
    return phase, message


def assess_metric_reason(
    measurements: Sequence[Measurement | Phase], metric: Metric, *, terminating: bool = False
) -> tuple[Phase, str]:
    """:func:`assess_metric` with a short reason for the phase."""
    phases = _phases(measurements, metric)
    if not phases:
        if terminating:
            return Phase.SUCCESSFUL, "run terminated before the first measurement"
        return Phase.PENDING, "no measurement yet"
    if not phases[-1].completed:
        return Phase.RUNNING, "a measurement is in flight"
    counts = MetricTally()
    for phase in phases:
        counts = counts.add(phase)
    limited, message = _limits_phase(metric, counts)
    if limited is not None:
        return limited, message
    success_limit = metric.consecutive_success_limit
    if success_limit > 0 and counts.consecutive_success >= success_limit:
        return Phase.SUCCESSFUL, (
            f"consecutiveSuccess ({counts.consecutive_success}) >= "
            f"consecutiveSuccessLimit ({success_limit})"
        )
    wanted = metric.effective_count
    if wanted is not None and counts.count >= wanted:
        failure_applies = metric.failure_limit >= 0
        if failure_applies and success_limit > 0:
            return Phase.INCONCLUSIVE, (
                f"count ({wanted}) reached: consecutiveSuccessLimit ({success_limit}) "
                f"not reached and failureLimit ({metric.failure_limit}) not exceeded"
            )
        if success_limit > 0:
            return Phase.FAILED, (
                f"count ({wanted}) reached: consecutiveSuccessLimit ({success_limit}) not reached"
            )
        return Phase.SUCCESSFUL, f"count ({wanted}) reached"
    if terminating:
        return Phase.SUCCESSFUL, "run terminated"
    return Phase.RUNNING, f"{counts.count} of {wanted or 'unbounded'} measurement(s) taken"


def assess_metric(
    measurements: Sequence[Measurement | Phase], metric: Metric, *, terminating: bool = False
) -> Phase:
    """The phase of ``metric`` after ``measurements`` (oldest first), as Argo Rollouts
    decides it.

    - no measurement yet: Pending; the last one still in flight: Running;
    - Failed when more measurements failed than ``failureLimit`` (never with -1),
      Inconclusive when more were inconclusive than ``inconclusiveLimit``, Error
      when more errors came in a row than ``consecutiveErrorLimit``; when several
      hold, the later in that list wins;
    - Successful once ``consecutiveSuccessLimit`` (when above 0) successes came in a row;
    - once the effective count is reached (Errors do not count): Inconclusive if a
      consecutiveSuccessLimit was set and not reached while failures were limited,
      Failed if it was set with ``failureLimit: -1``, otherwise Successful;
    - otherwise Running. ``terminating`` (the run is being stopped) turns Pending and
      Running into Successful, as Argo does when a rollout ends its background analysis.
    """
    return assess_metric_reason(measurements, metric, terminating=terminating)[0]


def assess_run(metric_phases: Iterable[Phase]) -> Phase:
    """The phase of an analysis run from its metrics' phases.

    A run ends as soon as one metric is Failed, Error or Inconclusive (Argo then
    terminates the others); its phase is the worst completed phase, in the order
    Successful < Inconclusive < Error < Failed. Otherwise it is Running while any
    metric is Pending or Running, and Successful when all are. A run without metrics
    stays Running, as in Argo (a template always has at least one metric).
    """
    phases = list(metric_phases)
    worst: Phase | None = None
    running = not phases
    for phase in phases:
        if not phase.completed:
            running = True
            continue
        if worst is None or _WORST_LAST.index(phase) > _WORST_LAST.index(worst):
            worst = phase
    if worst in (Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE):
        return worst
    if running or worst is None:
        return Phase.RUNNING
    return worst


class Verdict(str, Enum):
    """What the rollout does about an analysis run's phase."""

    CONTINUE = "continue"
    """Successful: go on (the next step, the switch, the promotion)."""
    ABORT = "abort"
    """Failed or Error: all traffic back to stable at once."""
    PAUSE = "pause"
    """Inconclusive (including no data): wait for a person to promote or abort."""
    WAIT = "wait"
    """Pending or Running: no decision yet."""

    def __str__(self) -> str:
        return self.value


def verdict(phase: Phase) -> Verdict:
    """Successful -> continue; Failed or Error -> abort; Inconclusive -> pause; else wait."""
    if phase == Phase.SUCCESSFUL:
        return Verdict.CONTINUE
    if phase in (Phase.FAILED, Phase.ERROR):
        return Verdict.ABORT
    if phase == Phase.INCONCLUSIVE:
        return Verdict.PAUSE
    return Verdict.WAIT


def next_measurement_at(
    metric: Metric, measurements: Sequence[Measurement], *, started_at: float
) -> float | None:
    """When ``metric`` should be measured next (a time on the same clock as
    ``started_at``, the start of the analysis run); None when it is done.

    The first measurement comes ``initialDelay`` after the start; later ones an
    ``interval`` after the previous one finished, or :data:`ERROR_RETRY_INTERVAL`
    after an Error; none once the metric's phase is decided or its count is reached.
    """
    if assess_metric(measurements, metric).completed:
        return None
    if not measurements:
        return started_at + (metric.initial_delay or 0.0)
    last = measurements[-1]
    if last.finished_at is None:
        return None  # in flight: resume it, no new one
    last_phase = measurement_phase(last, metric)
    if last_phase == Phase.ERROR:
        return last.finished_at + ERROR_RETRY_INTERVAL
    wanted = metric.effective_count
    if wanted is not None and tally(measurements, metric).count >= wanted:
        return None
    return last.finished_at + (metric.interval or ERROR_RETRY_INTERVAL)
