"""The ``prometheus`` provider: a PromQL instant query over HTTP."""

from __future__ import annotations

import math
from typing import Any

import httpx

from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement
from llmship.analysis.providers.base import MeasureContext, MeasurementError

__all__ = ["PrometheusProvider", "parse_query_response"]


def _sample(value: Any) -> float:
    """One sample value: Prometheus sends ``[timestamp, "text"]``; NaN and ±Inf are text."""
    try:
        return float(value[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise MeasurementError(f"unexpected sample {value!r} in the answer") from exc


def parse_query_response(body: Any) -> float | list[float]:
    """The value of an instant-query answer: a vector gives a list of floats (one per
    series, in the order Prometheus sent them), a scalar one float. MeasurementError for an
    error answer or another result type."""
    if not isinstance(body, dict):
        raise MeasurementError("the answer is not a Prometheus API response")
    if body.get("status") != "success":
        kind = body.get("errorType") or "error"
        raise MeasurementError(f"Prometheus answered {kind}: {body.get('error') or body}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise MeasurementError("the answer has no data")
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "vector" and isinstance(result, list):
        return [_sample(series.get("value")) for series in result if isinstance(series, dict)]
    if kind == "scalar":
        return _sample(result)
    raise MeasurementError(
        f"the query gives a {kind}; use a query that gives an instant vector or a scalar"
    )


def _text(value: float | list[float]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    return "NaN" if math.isnan(value) else f"{value:.6g}"


class PrometheusProvider:
    """``GET {address}/api/v1/query?query=...``, with ``{{args.NAME}}`` filled in."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def measure(self, metric: Metric, context: MeasureContext) -> Measurement:
        spec = metric.provider.prometheus
        if spec is None:
            raise MeasurementError(f"metric {metric.name} has no prometheus provider")
        address = context.render(spec.address).rstrip("/")
        query = context.render(spec.query)
        headers = {h.key: context.render(h.value) for h in spec.headers}
        try:
            response = self.client.get(
                f"{address}/api/v1/query",
                params={"query": query},
                headers=headers,
                timeout=spec.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise MeasurementError(f"cannot query Prometheus at {address}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise MeasurementError(
                f"Prometheus at {address} answered HTTP {response.status_code}, not JSON"
            ) from None
        if response.status_code >= 400 and not isinstance(body, dict):
            raise MeasurementError(f"Prometheus at {address} answered HTTP {response.status_code}")
        value = parse_query_response(body)
        return Measurement(value, None, f"{_text(value)}")
