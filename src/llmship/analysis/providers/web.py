"""The ``web`` provider: a JSON endpoint, its value picked by a JSONPath."""

from __future__ import annotations

import json
from typing import Any

import httpx

from llmship.analysis.jsonpath import JsonPathError, compile_path
from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement
from llmship.analysis.providers.base import MeasureContext, MeasurementError

__all__ = ["WebProvider"]


def _render_json(value: Any, context: MeasureContext) -> Any:
    if isinstance(value, str):
        return context.render(value)
    if isinstance(value, dict):
        return {context.render(str(k)): _render_json(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, context) for v in value]
    return value


class WebProvider:
    """GET (or POST/PUT) ``url`` and select ``jsonPath`` from the JSON answer.

    A 2xx answer is required; the selected value (a number, text, boolean, list or
    mapping) is the measurement's ``result``.
    """

    def __init__(self, client: httpx.Client):
        self.client = client

    def measure(self, metric: Metric, context: MeasureContext) -> Measurement:
        spec = metric.provider.web
        if spec is None:
            raise MeasurementError(f"metric {metric.name} has no web provider")
        url = context.render(spec.url)
        headers = {h.key: context.render(h.value) for h in spec.headers}
        content: bytes | None = None
        if spec.json_body is not None:
            content = json.dumps(_render_json(spec.json_body, context)).encode()
            headers.setdefault("Content-Type", "application/json")
        elif spec.body is not None:
            content = context.render(spec.body).encode()
        try:
            path = compile_path(context.render(spec.json_path))
        except ValueError as exc:
            raise MeasurementError(f"jsonPath: {exc}") from None
        try:
            response = self.client.request(
                spec.method, url, headers=headers, content=content, timeout=spec.timeout_seconds
            )
        except httpx.HTTPError as exc:
            raise MeasurementError(f"cannot reach {url}: {exc}") from exc
        if not response.is_success:
            raise MeasurementError(f"{url} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise MeasurementError(f"{url} did not answer JSON") from None
        try:
            value = path.select(document)
        except JsonPathError as exc:
            raise MeasurementError(f"jsonPath {spec.json_path}: {exc}") from None
        return Measurement(value, None, json.dumps(value)[:200])
