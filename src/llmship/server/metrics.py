"""Prometheus metrics of the model server; every series carries the ``version`` label."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmship._request_metrics import (
    LATENCY_BUCKETS,
    TPS_BUCKETS,
    TTFT_BUCKETS,
    request_series,
)
from llmship.analysis.stats import time_per_output_token

__all__ = [
    "LATENCY_BUCKETS",
    "QUEUE_BUCKETS",
    "TPS_BUCKETS",
    "TTFT_BUCKETS",
    "GpuCollector",
    "ServerMetrics",
]

log = logging.getLogger(__name__)

QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """The model server's series, in their own registry (one per app)."""

    def __init__(self, version: str, registry: CollectorRegistry | None = None):
        self.version = version
        self.registry = registry or CollectorRegistry()
        r = self.registry
        series = request_series(
            r,
            requests_help="HTTP requests answered.",
            latency_help="End-to-end time of a generation request, queue included.",
            ttft_help="Time from a streamed request's arrival to its first generated text "
            "(streamed requests only: a non-streamed answer has no first token).",
            tokens_per_second_help=(
                "Output tokens per second of each request (completion tokens / end-to-end time)."
            ),
            tpot_help="Time per output token after the first of each streamed generation of "
            "two tokens or more: (latency - TTFT) / (completion tokens - 1).",
        )
        self.requests, self.latency, self.ttft = series.requests, series.latency, series.ttft
        self.tokens_per_second, self.tpot = series.tokens_per_second, series.tpot
        self.prompt_tokens = Counter(
            "llm_prompt_tokens", "Prompt tokens processed.", ["version"], registry=r
        )
        self.generation_tokens = Counter(
            "llm_generation_tokens", "Tokens generated.", ["version"], registry=r
        )
        self.queue_wait = Histogram(
            "llm_queue_wait_seconds",
            "Time a request waited for the model.",
            ["version"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_requests_in_flight",
            "Generation requests waiting or running.",
            ["version"],
            registry=r,
        )
        self.in_flight.labels(version=version).set(0)
        self.stopped = Counter(
            "llm_generations_stopped",
            "Generations stopped before their end: the client went away or the request timed out.",
            ["version"],
            registry=r,
        )
        self.stopped.labels(version=version)
        gpu = GpuCollector.detect(version)
        if gpu is not None:
            r.register(gpu)

    def observe_generation(
        self,
        route: str,
        *,
        latency: float,
        ttft: float | None,
        prompt_tokens: int | None,
        completion_tokens: int,
    ) -> None:
        """Record one finished generation; ``ttft`` only for a streamed one (None otherwise),
        which also gives its time per output token."""
        v = self.version
        self.latency.labels(route=route, version=v).observe(latency)
        if ttft is not None:
            self.ttft.labels(route=route, version=v).observe(ttft)
            tpot = time_per_output_token(latency, ttft, completion_tokens)
            if tpot is not None:
                self.tpot.labels(route=route, version=v).observe(tpot)
        if latency > 0 and completion_tokens > 0:
            self.tokens_per_second.labels(version=v).observe(completion_tokens / latency)
        if prompt_tokens is not None:  # unknown (an upstream without usage) adds nothing
            self.prompt_tokens.labels(version=v).inc(prompt_tokens)
        self.generation_tokens.labels(version=v).inc(completion_tokens)


class GpuCollector(Collector):
    """``gpu_usage_percent`` per visible NVIDIA GPU, read from NVML at scrape time."""

    def __init__(self, version: str, handles: list[object]):
        self.version = version
        self.handles = handles

    @classmethod
    def detect(cls, version: str) -> GpuCollector | None:
        """A collector when NVML finds at least one GPU; None otherwise."""
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # no driver, no library, no device: no GPU metric
            return None
        if not handles:
            return None
        log.info("exporting gpu_usage_percent for %d GPU(s)", len(handles))
        return cls(version, handles)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        import pynvml

        family = GaugeMetricFamily(
            "gpu_usage_percent",
            "GPU utilisation over the last sample period.",
            labels=["gpu", "version"],
        )
        for index, handle in enumerate(self.handles):
            try:
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            except pynvml.NVMLError:
                continue
            family.add_metric([str(index), self.version], float(rates.gpu))
        yield family
