"""The ``builtin`` provider: the gateway's per-version statistics over a window."""

from __future__ import annotations

import math

from llmship.analysis.compare import compare_to_stable
from llmship.analysis.models import BuiltinMetric, Metric
from llmship.analysis.phases import Measurement, Phase
from llmship.analysis.providers.base import MeasureContext, MeasurementError
from llmship.analysis.stats import (
    BUILTIN_METRICS,
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
    """

    def __init__(self, source: StatsSource):
        self.source = source

    def measure(self, metric: Metric, context: MeasureContext) -> Measurement:
        spec = metric.provider.builtin
        if spec is None:
            raise MeasurementError(f"metric {metric.name} has no builtin provider")
        window = spec.window or context.window_s
        candidate = self.source.stats(context.env, context.candidate, window)
        if spec.compare:
            return self._compare(spec, context, window, candidate)
        name = spec.metric
        value = builtin_value(name, candidate)
        if BUILTIN_METRICS[name].samples != "none":
            n = sample_size(name, candidate)
            if n < spec.effective_min_samples:
                return Measurement(
                    math.nan,
                    Phase.INCONCLUSIVE,
                    f"{name}: {n} sample(s) in {window:g}s, fewer than minSamples "
                    f"({spec.effective_min_samples}): no data to judge",
                )
        return Measurement(value, None, f"{name} = {value:.6g} over {window:g}s")

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
