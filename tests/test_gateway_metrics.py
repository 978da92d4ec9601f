"""The gateway's Prometheus metrics: version and variant labels, and every metric
documented in docs/gateway.md."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from _gateway import (
    CANARY,
    ROOT,
    STABLE,
    Rig,
)
from llmship.gateway.metrics import GatewayMetrics

# -- metrics and docs ---------------------------------------------------------------------------


def test_metrics_carry_version_and_variant(rig: Rig) -> None:
    rig.set_policy(canary=CANARY, canary_weight=50)
    for _ in range(10):
        rig.chat()
    text = rig.client.get("/metrics").text
    assert re.search(
        r'http_requests_total\{method="POST",route="/v1/chat/completions",status="200",'
        r'variant="(stable|canary)",version="chat@1\.\d\.0"\}',
        text,
    )
    for name in (
        "model_latency_seconds_bucket",
        "llm_time_to_first_token_seconds_bucket",
        "tokens_per_second_bucket",
        "llmship_gateway_overhead_seconds_bucket",
    ):
        assert re.search(name + r'\{.*variant="(stable|canary)",version="chat@1\.\d\.0"', text)
    assert 'llmship_traffic_weight{variant="stable",version="chat@1.0.0"} 50.0' in text
    assert "llmship_policy_revision 1.0" in text
    assert "llmship_registry_up 1.0" in text
    overhead = rig.metric(
        "llmship_gateway_overhead_seconds_sum",
        route="/v1/chat/completions",
        version=STABLE,
        variant="stable",
    )
    latency = rig.metric(
        "model_latency_seconds_sum", route="/v1/chat/completions", version=STABLE, variant="stable"
    )
    assert overhead is not None and latency is not None and 0 < overhead <= latency


def _gateway_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    metrics = GatewayMetrics()
    found = {}
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            name = wrapper._name + ("_total" if wrapper._type == "counter" else "")
            found[name] = (wrapper._type, tuple(wrapper._labelnames))
    return found


@pytest.mark.parametrize(("name", "kind_labels"), sorted(_gateway_metrics().items()))
def test_every_gateway_metric_is_documented(name: str, kind_labels: tuple[str, Any]) -> None:
    kind, labels = kind_labels
    text = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` ")]
    assert rows, f"docs/gateway.md has no table row for the metric `{name}`"
    assert kind in rows[0], f"docs/gateway.md: `{name}` is a {kind}"
    for label in labels:
        assert f"`{label}`" in rows[0], f"docs/gateway.md: `{name}` row lacks label `{label}`"
