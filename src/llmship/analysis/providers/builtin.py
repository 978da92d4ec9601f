"""The ``builtin`` provider: the gateway's per-version statistics over a window."""

from __future__ import annotations

import math
from dataclasses import replace

from llmship.analysis.compare import compare_to_stable
from llmship.analysis.models import BuiltinMetric, Metric
from llmship.analysis.phases import Measurement, Phase
from llmship.analysis.providers.base import MeasureContext, MeasurementError
from llmship.analysis.stats import (
    BUILTIN_METRICS,
    IncompleteStats,
    StatsSource,
    VersionStats,
    builtin_value,
    sample_size,
)

__all__ = ["BuiltinProvider"]


class BuiltinProvider:
    """Reads :class:`~llmship.analysis.stats.VersionStats` from a ``StatsSource``.

    Threshold mode: the value is the named metric of the candidate; with fewer
    than ``minSamples`` samples behind it (no traffic, no feedback yet) the
    measurement is Inconclusive with a NaN value, whatever the conditions say.
    ``request_count`` always has a value. Comparison mode (``compare: stable``):
    see :func:`~llmship.analysis.compare.compare_to_stable`.

    Statistics that miss traffic (:class:`~llmship.analysis.stats.IncompleteStats`:
    a gateway carrying requests did not answer) make the measurement Inconclusive;
    the source's notes (a quiet gateway left out) end its message.
    """

    def __init__(self, source: StatsSource):
        self.source = source

    def measure(self, metric: Metric, context: MeasureContext) -> Measurement:
        try:
            measured = self._measure(metric, context)
        except IncompleteStats as exc:
            return Measurement(math.nan, Phase.INCONCLUSIVE, str(exc))
        return measured

    def _measure(self, metric: Metric, context: MeasureContext) -> Measurement:
        spec = metric.provider.builtin
        if spec is None:
            raise MeasurementError(f"metric {metric.name} has no builtin provider")
        window = spec.window or context.window_s
        candidate = self.source.stats(context.env, context.candidate, window)
        if spec.compare:
            compared = self._compare(spec, context, window, candidate)
            return replace(compared, message=_with_notes(compared.message, candidate))
        name = spec.metric
        value = builtin_value(name, candidate, spec.goodput_slo)
        if BUILTIN_METRICS[name].samples != "none":
            n = sample_size(name, candidate)
            if n < spec.effective_min_samples:
                return Measurement(
                    math.nan,
                    Phase.INCONCLUSIVE,
                    _with_notes(
                        f"{name}: {n} sample(s) in {window:g}s, fewer than minSamples "
                        f"({spec.effective_min_samples}): no data to judge",
                        candidate,
                    ),
                )
        return Measurement(
            value, None, _with_notes(f"{name} = {value:.6g} over {window:g}s", candidate)
        )

    def _compare(
        self, spec: BuiltinMetric, context: MeasureContext, window: float, candidate: VersionStats
    ) -> Measurement:
        if not context.stable:
            return Measurement(
                math.nan, Phase.INCONCLUSIVE, "compare: stable, but there is no stable release"
            )
        stable = self.source.stats(context.env, context.stable, window)
        return compare_to_stable(
            spec.metric,
            candidate,
            stable,
            alpha=spec.alpha,
            min_samples=spec.effective_min_samples,
        )


def _with_notes(message: str, stats: VersionStats) -> str:
    return f"{message} ({'; '.join(stats.notes)})" if stats.notes else message
