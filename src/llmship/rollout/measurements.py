"""Analysis runs as the controller measures them: due measurements taken, stored, judged.

:class:`Measurer` takes, for each live run of a rollout, every measurement that is
due (``run_measurement`` with the providers, or for an experiment's decision
:func:`llmship.analysis.decide_experiment` once), stores it in the registry, and
turns a run whose metrics are all decided into an :class:`AnalysisResult` event.
When a measurement is due is :func:`first_measurement_at` (Argo's schedule, with
the first measurement of an interval metric one interval after the run starts).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from llmship.analysis.compare import decide_experiment
from llmship.analysis.models import AnalysisRef, Metric
from llmship.analysis.phases import Measurement, Phase, assess_metric_reason, assess_run
from llmship.analysis.phases import next_measurement_at as argo_next_measurement_at
from llmship.analysis.providers import MeasureContext, Providers, run_measurement
from llmship.analysis.stats import IncompleteStats
from llmship.errors import LlmshipError
from llmship.registry import MeasurementRecord, Registry
from llmship.rollout.events import AnalysisResult
from llmship.rollout.records import from_timestamp
from llmship.rollout.state import AnalysisRun, RolloutState

__all__ = ["DEFAULT_WINDOW_S", "Measurer", "first_measurement_at"]

DEFAULT_WINDOW_S = 60.0
"""Look-back window of builtin metrics that give none."""


def first_measurement_at(
    metric: Metric, measurements: Sequence[Measurement], *, started_at: float
) -> float | None:
    """When the controller takes ``metric``'s next measurement.

    As :func:`llmship.analysis.next_measurement_at` (Argo's schedule), except for the
    first measurement of a metric with an ``interval`` and no ``initialDelay``: it
    comes one interval after the run starts, not at once, so that the window holds
    requests the candidate answered under its new share of the traffic (a
    measurement of nothing is Inconclusive and would pause every rollout).
    """
    if not measurements and metric.initial_delay is None and metric.interval is not None:
        return started_at + metric.interval
    return argo_next_measurement_at(metric, measurements, started_at=started_at)


@dataclass
class Measurer:
    """Takes and judges the measurements of one pass, writing through ``view``.

    ``providers`` is called only when a measurement is due (the controller makes
    its providers on first use); ``window_s`` is the look-back window of builtin
    metrics that give none; ``clock`` (seconds) says what is due.
    """

    view: Registry
    providers: Callable[[], Providers]
    window_s: float
    clock: Callable[[], float]

    def results(self, state: RolloutState) -> list[AnalysisResult]:
        """Take every due measurement of the live runs; the verdicts of runs now decided."""
        live = state.live_runs()
        if not live:
            return []
        stored: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
        for m in self.view.list_measurements(state.rollout_id, runs=[r.name for r in live]):
            stored[(m.run, m.metric)].append(_measurement(m))
        refs: dict[str, AnalysisRef] = dict(state.spec.analysis_refs())
        results = []
        for run in live:
            if run.role == "decision":
                result = self._decision(state, run, stored)
            else:
                result = self._run(state, run, refs[run.ref], stored)
            if result is not None:
                results.append(result)
        return results

    def _run(
        self,
        state: RolloutState,
        run: AnalysisRun,
        ref: AnalysisRef,
        stored: dict[tuple[str, str], list[Measurement]],
    ) -> AnalysisResult | None:
        spec = state.spec.resolve(ref)
        context = MeasureContext(
            env=state.env,
            candidate=state.candidate,
            stable=state.stable,
            window_s=self.window_s,
            args=spec.args,
            clock=self.clock,
        )
        verdicts: list[tuple[Phase, str]] = []
        for metric in spec.metrics:
            measurements = stored[(run.name, metric.name)]
            if run.terminating:
                if not measurements and run.role == "shadow":
                    verdicts.append(
                        (Phase.INCONCLUSIVE, f"{metric.name}: no measurement was taken")
                    )
                    continue
                phase, why = assess_metric_reason(measurements, metric, terminating=True)
                verdicts.append((phase, f"{metric.name}: {why}"))
                continue
            phase, why = assess_metric_reason(measurements, metric)
            if not phase.completed:
                due = first_measurement_at(metric, measurements, started_at=run.started_at)
                if due is not None and due <= self.clock():
                    taken = run_measurement(metric, context, self.providers())
                    self._store(state, run, metric.name, taken)
                    measurements.append(taken)
                    phase, why = assess_metric_reason(measurements, metric)
            verdicts.append((phase, f"{metric.name}: {why}"))
        return _verdict(run, verdicts)

    def _decision(
        self,
        state: RolloutState,
        run: AnalysisRun,
        stored: dict[tuple[str, str], list[Measurement]],
    ) -> AnalysisResult | None:
        experiment = state.spec.strategy.experiment
        if experiment is None:  # pragma: no cover - decisions are only started by experiments
            return None
        decision = experiment.decision
        metric = _decision_metric(decision.metric)
        measurements = stored[(run.name, metric.name)]
        phase, why = assess_metric_reason(measurements, metric)
        if not phase.completed:
            due = argo_next_measurement_at(metric, measurements, started_at=run.started_at)
            if due is not None and due <= self.clock():
                started = self.clock()
                try:
                    source = self.providers().stats
                    if source is None or state.stable is None:
                        raise LlmshipError(
                            "the decision needs the gateway's statistics and a stable release"
                        )
                    window = experiment.duration
                    taken = decide_experiment(
                        decision.metric,
                        source.stats(state.env, state.candidate, window),
                        source.stats(state.env, state.stable, window),
                        higher_is_better=decision.effective_higher_is_better,
                        alpha=decision.alpha,
                        min_samples=decision.min_samples,
                    )
                except IncompleteStats as exc:  # a gateway that carried traffic is missing
                    taken = Measurement(math.nan, Phase.INCONCLUSIVE, str(exc))
                except Exception as exc:
                    message = (
                        exc.message
                        if isinstance(exc, LlmshipError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    taken = Measurement(None, Phase.ERROR, message)
                taken = replace(taken, started_at=started, finished_at=self.clock())
                self._store(state, run, metric.name, taken)
                measurements.append(taken)
                phase, why = assess_metric_reason(measurements, metric)
        if not phase.completed:
            return None
        last = measurements[-1].message if measurements else why
        return AnalysisResult(
            run.name, phase, last if phase is not Phase.ERROR else f"{why}: {last}"
        )

    def _store(
        self, state: RolloutState, run: AnalysisRun, metric: str, taken: Measurement
    ) -> None:
        started = taken.started_at
        finished = taken.finished_at if taken.finished_at is not None else self.clock()
        self.view.record_measurement(
            state.rollout_id,
            run.name,
            metric,
            phase=(taken.phase or Phase.ERROR).value,
            value=taken.value,
            message=taken.message,
            started_at=from_timestamp(started) if started is not None else None,
            at=from_timestamp(finished),
        )


def _measurement(record: MeasurementRecord) -> Measurement:
    return Measurement(
        record.value,
        Phase(record.phase),
        record.message,
        record.started_at.timestamp() if record.started_at is not None else None,
        record.at.timestamp(),
    )


def _verdict(run: AnalysisRun, verdicts: list[tuple[Phase, str]]) -> AnalysisResult | None:
    phase = assess_run(p for p, _ in verdicts)
    if not phase.completed:
        return None
    reasons = [why for p, why in verdicts if p is phase] or [why for _, why in verdicts]
    return AnalysisResult(run.name, phase, "; ".join(reasons))


_DECISION_METRICS: dict[str, Metric] = {}


def _decision_metric(name: str) -> Metric:
    """The experiment's decision as a metric: one measurement, Argo's default limits."""
    metric = _DECISION_METRICS.get(name)
    if metric is None:
        data: dict[str, Any] = {
            "name": name.replace("_", "-"),
            "provider": {"builtin": {"metric": name}},
        }
        metric = Metric.model_validate(data)
        _DECISION_METRICS[name] = metric
    return metric
