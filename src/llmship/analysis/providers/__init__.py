"""Metric providers behind one interface, and :func:`run_measurement`, which the
controller calls for each due measurement.

- ``builtin``: :class:`BuiltinProvider` (the gateway's per-version statistics);
- ``prometheus``: :class:`PrometheusProvider` (PromQL instant query);
- ``web``: :class:`WebProvider` (a JSON endpoint and a JSONPath).
"""

from __future__ import annotations

import logging

import httpx

from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement, Phase, assess_measurement, condition_error
from llmship.analysis.providers.base import MeasureContext, MeasurementError, Provider
from llmship.analysis.providers.builtin import BuiltinProvider
from llmship.analysis.providers.prometheus import PrometheusProvider, parse_query_response
from llmship.analysis.providers.web import WebProvider
from llmship.analysis.stats import StatsSource

__all__ = [
    "BuiltinProvider",
    "MeasureContext",
    "MeasurementError",
    "PrometheusProvider",
    "Provider",
    "Providers",
    "WebProvider",
    "parse_query_response",
    "run_measurement",
]

log = logging.getLogger(__name__)


class Providers:
    """One provider per kind, sharing one HTTP client; pick with :meth:`for_metric`.

    ``transport`` (e.g. ``httpx.MockTransport``) replaces the network in tests;
    without a ``stats`` source, builtin metrics measure as Errors.
    """

    def __init__(
        self,
        *,
        stats: StatsSource | None = None,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
    ):
        self._own_client = client is None
        self.client = client or httpx.Client(transport=transport, follow_redirects=True)
        self.stats = stats
        self._prometheus = PrometheusProvider(self.client)
        self._web = WebProvider(self.client)
        self._builtin = BuiltinProvider(stats) if stats is not None else None

    def for_metric(self, metric: Metric) -> Provider:
        """The provider of ``metric``; MeasurementError when it cannot be served here."""
        kind = metric.provider.kind
        if kind == "prometheus":
            return self._prometheus
        if kind == "web":
            return self._web
        if self._builtin is None:
            raise MeasurementError("builtin metrics need the gateway's statistics (no source)")
        return self._builtin

    def close(self) -> None:
        """Close the HTTP client this object made."""
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Providers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_measurement(
    metric: Metric, context: MeasureContext, provider: Provider | Providers
) -> Measurement:
    """Take one measurement of ``metric`` and score it; never raises.

    A provider failure (any exception) is an Error measurement carrying the
    message; a value is scored with the metric's conditions unless the provider
    decided the phase itself. ``started_at`` and ``finished_at`` come from
    ``context.clock``.
    """
    started = context.clock()
    try:
        chosen = provider.for_metric(metric) if isinstance(provider, Providers) else provider
        measured = chosen.measure(metric, context)
    except MeasurementError as exc:
        measured = Measurement(None, Phase.ERROR, str(exc))
    except Exception as exc:
        log.exception("metric %s: the %s provider failed", metric.name, metric.provider.kind)
        measured = Measurement(None, Phase.ERROR, f"{type(exc).__name__}: {exc}")
    phase = measured.phase
    message = measured.message
    if phase is None:
        phase = assess_measurement(measured.value, metric)
        if phase == Phase.ERROR:
            message = condition_error(measured.value, metric) or message
    finished = context.clock()
    log.info("metric %s of %s: %s (%s)", metric.name, context.candidate, phase.value, message[:200])
    return Measurement(measured.value, phase, message, started, finished)
