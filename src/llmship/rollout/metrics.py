"""Prometheus metrics of an environment's rollouts, read from the registry at scrape time.

``llmship controller --metrics-port PORT`` serves them on ``/metrics``. They are
computed when Prometheus scrapes, from what the registry holds (cached for a
second), not from the memory of the controller that happens to lead: every
replica of the controller reports the same series, and
``llmship_controller_leader`` says which one leads.

- ``llmship_rollout_info{env,rollout,strategy,release,phase}``: 1 per rollout;
- ``llmship_rollout_step{env,rollout}``: its step index (canary) or stage;
- ``llmship_rollout_weight{env,rollout,version}``: percent of the requests the
  rollout gives its candidate and its stable release;
- ``llmship_analysis_metric_value{env,rollout,run,metric}``: the latest measurement;
- ``llmship_analysis_metric_phase{env,rollout,run,metric,phase}``: 1 for the phase
  of each metric as Argo Rollouts assesses it (failure limits and counts applied);
- ``llmship_controller_leader{env}``: 1 while this controller holds the lease.

A rollout is reported while it runs and for :data:`RECENT_S` after it ends, so a
dashboard shows how it ended. The weights and verdicts are pure functions of the
stored state (:func:`rollout_weights`, :func:`metric_views`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmship.analysis.models import Metric as AnalysisMetric
from llmship.analysis.phases import Measurement, Phase, assess_metric
from llmship.registry.records import MeasurementRecord, RolloutRecord
from llmship.rollout.records import from_timestamp, state_of
from llmship.rollout.state import RolloutPhase, RolloutState

__all__ = [
    "CACHE_S",
    "DEFAULT_METRICS_PORT",
    "RECENT_S",
    "MetricView",
    "RolloutCollector",
    "metric_views",
    "rollout_weights",
    "serve_metrics",
]

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9100
"""Where ``llmship controller`` serves ``/metrics`` unless told otherwise."""
RECENT_S = 900.0
"""A finished rollout is still reported this many seconds after its last change."""
CACHE_S = 1.0
"""Scrapes this close together share one read of the registry."""
RECENT_ROLLOUTS = 20
"""The newest rollouts of the environment that are looked at."""


class RolloutSource(Protocol):
    """What the collector reads (the registry has it)."""

    def list_rollouts(
        self, env: str | None = None, *, active_only: bool = False, limit: int = 50
    ) -> list[RolloutRecord]: ...

    def list_measurements(
        self, rollout_id: int, *, runs: Iterable[str] | None = None
    ) -> list[MeasurementRecord]: ...


@dataclass(frozen=True)
class MetricView:
    """One metric of one analysis run, as the dashboard shows it."""

    run: str
    metric: str
    value: float | None
    """The latest measured value as a number (the first of a vector), or None."""
    phase: Phase


def rollout_weights(state: RolloutState) -> dict[str, float]:
    """Percent of the requests the rollout gives its candidate and its stable release.

    A canary gives the candidate its current weight; blue-green all or nothing,
    once switched; an experiment its candidate variant's weight while it runs; a
    shadow nothing (mirrored requests are not answered by the candidate).
    Healthy: all on the candidate; Aborted and Pending: all on stable.
    """
    candidate = _candidate_weight(state)
    weights = {state.candidate: candidate}
    if state.stable is not None and state.stable != state.candidate:
        weights[state.stable] = 100.0 - candidate
    return weights


def _candidate_weight(state: RolloutState) -> float:
    if state.phase is RolloutPhase.HEALTHY:
        return 100.0
    if state.phase in (RolloutPhase.ABORTED, RolloutPhase.PENDING):
        return 0.0
    strategy = state.spec.strategy
    if strategy.canary is not None:
        return min(100.0, max(0.0, state.weight))
    if strategy.blue_green is not None:
        return 100.0 if state.switched else 0.0
    if strategy.experiment is not None:
        releases = strategy.experiment.releases()
        return sum(
            v.weight
            for v, release in zip(strategy.experiment.variants, releases, strict=True)
            if release == "candidate"
        )
    return 0.0


def metric_views(
    state: RolloutState, measurements: Sequence[MeasurementRecord]
) -> list[MetricView]:
    """Every metric of every analysis run of ``state``: its latest value and its phase.

    The phase is the metric's as the controller assesses it (``failureLimit``,
    ``count``, ... applied); in a run that has ended, one still running is assessed
    as terminated, as Argo does. A metric the spec does not define (an experiment's
    decision) has the phase of its latest measurement.
    """
    taken: dict[tuple[str, str], list[MeasurementRecord]] = defaultdict(list)
    for m in measurements:
        taken[(m.run, m.metric)].append(m)
    refs = dict(state.spec.analysis_refs())
    views = []
    for run in state.runs:
        defined: dict[str, AnalysisMetric] = {}
        if run.ref in refs:
            defined = {m.name: m for m in state.spec.resolve(refs[run.ref]).metrics}
        names = list(defined) + sorted(
            {metric for r, metric in taken if r == run.name and metric not in defined}
        )
        for name in names:
            records = taken.get((run.name, name), [])
            metric = defined.get(name)
            if metric is not None:
                phase = assess_metric(
                    [_measurement(m) for m in records], metric, terminating=run.phase.completed
                )
            else:
                phase = Phase(records[-1].phase) if records else Phase.PENDING
            value = _number(records[-1].value) if records else None
            views.append(MetricView(run.name, name, value, phase))
    return views


def _measurement(record: MeasurementRecord) -> Measurement:
    return Measurement(record.value, Phase(record.phase), record.message)


def _number(value: Any) -> float | None:
    """A measured value as a finite number: a number, a boolean, or a vector's first."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, (bool, int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


class RolloutCollector(Collector):
    """The rollout series of ``env``, read from ``source`` at most every ``cache_s``.

    ``leading`` says whether this controller holds the lease; ``clock`` (seconds)
    decides which finished rollouts are still recent.
    """

    def __init__(
        self,
        source: RolloutSource,
        env: str,
        *,
        leading: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        recent_s: float = RECENT_S,
        cache_s: float = CACHE_S,
    ):
        self.source = source
        self.env = env
        self.leading = leading
        self.clock = clock
        self.recent_s = recent_s
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self._failing = False

    def collect(self) -> Iterator[Metric]:
        """The series of this scrape (a registry that cannot be read gives only the
        leader gauge and ``llmship_controller_registry_up 0``)."""
        leader = GaugeMetricFamily(
            "llmship_controller_leader",
            "1 while this controller holds the lease of its environment (it acts), else 0.",
            labels=["env"],
        )
        leader.add_metric([self.env], 1.0 if self.leading() else 0.0)
        yield leader
        up = GaugeMetricFamily(
            "llmship_controller_registry_up",
            "1 when the controller's last read of the rollouts in the registry succeeded.",
        )
        families = self._families()
        up.add_metric([], 0.0 if families is None else 1.0)
        yield up
        yield from families or []

    def _families(self) -> list[Metric] | None:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_s:
                return self._cached[1]
            try:
                families = self._read()
            except Exception as exc:  # a scrape answers even when the registry does not
                if not self._failing:
                    log.warning("cannot read the rollouts of %s for /metrics: %s", self.env, exc)
                self._failing = True
                return None
            self._failing = False
            self._cached = (now, families)
            return families

    def _read(self) -> list[Metric]:
        info = GaugeMetricFamily(
            "llmship_rollout_info",
            "1 for each rollout running or recently ended, with its strategy, candidate "
            "release and phase.",
            labels=["env", "rollout", "strategy", "release", "phase"],
        )
        step = GaugeMetricFamily(
            "llmship_rollout_step",
            "Index of the rollout's current step (canary; len(steps) once done), or the "
            "stage of other strategies.",
            labels=["env", "rollout"],
        )
        weight = GaugeMetricFamily(
            "llmship_rollout_weight",
            "Percent of the requests the rollout gives its candidate and its stable release.",
            labels=["env", "rollout", "version"],
        )
        value = GaugeMetricFamily(
            "llmship_analysis_metric_value",
            "Latest measured value of each metric of each analysis run of the rollout.",
            labels=["env", "rollout", "run", "metric"],
        )
        phase = GaugeMetricFamily(
            "llmship_analysis_metric_phase",
            "1 for the current phase of each metric of each analysis run (Pending, Running, "
            "Successful, Failed, Error, Inconclusive).",
            labels=["env", "rollout", "run", "metric", "phase"],
        )
        for state in self._states():
            env, name = self.env, state.name
            info.add_metric([env, name, state.strategy, state.candidate, state.phase.value], 1.0)
            step.add_metric([env, name], float(state.step_index))
            for version, percent in rollout_weights(state).items():
                weight.add_metric([env, name, version], percent)
            if not state.runs:
                continue
            for view in metric_views(state, self.source.list_measurements(state.rollout_id)):
                if view.value is not None:
                    value.add_metric([env, name, view.run, view.metric], view.value)
                phase.add_metric([env, name, view.run, view.metric, view.phase.value], 1.0)
        return [info, step, weight, value, phase]

    def _states(self) -> list[RolloutState]:
        """The newest rollout of each name that runs, or ended within ``recent_s``."""
        since = from_timestamp(self.clock()) - timedelta(seconds=self.recent_s)
        seen: set[str] = set()
        states = []
        for record in self.source.list_rollouts(self.env, limit=RECENT_ROLLOUTS):
            if record.name in seen:
                continue
            seen.add(record.name)
            if record.active or record.updated_at >= since:
                states.append(state_of(record))
        return states


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Serve ``registry`` on ``http://HOST:PORT/metrics`` from a daemon thread; the
    server (``shutdown()`` stops it). OSError when the port is taken."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
