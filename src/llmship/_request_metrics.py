"""The request series that the model server and the gateway both export.

Both declare them with the same names, label names and buckets, so one query
or dashboard reads either; the gateway adds its labels (``variant``) after
``version``, and each service's help text says what it measures there.

Time to first token and time per output token are observed for **streamed**
answers only: a client that asked for the whole answer at once gets no first
token before the last, and its end-to-end time is not a time to first token.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
TPS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0, 400.0, 1000.0)


class RequestSeries(NamedTuple):
    """``http_requests_total``, ``model_latency_seconds``,
    ``llm_time_to_first_token_seconds``, ``tokens_per_second`` and
    ``llm_time_per_output_token_seconds``."""

    requests: Counter
    latency: Histogram
    ttft: Histogram
    tokens_per_second: Histogram
    tpot: Histogram


def request_series(
    registry: CollectorRegistry,
    *,
    extra_labels: tuple[str, ...] = (),
    requests_help: str,
    latency_help: str,
    ttft_help: str,
    tokens_per_second_help: str,
    tpot_help: str,
) -> RequestSeries:
    """Declare the shared request series in ``registry``, each labelled by ``version``
    and then ``extra_labels``."""
    labels = ("version", *extra_labels)
    return RequestSeries(
        requests=Counter(
            "http_requests_total",
            requests_help,
            ["method", "route", "status", *labels],
            registry=registry,
        ),
        latency=Histogram(
            "model_latency_seconds",
            latency_help,
            ["route", *labels],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        ttft=Histogram(
            "llm_time_to_first_token_seconds",
            ttft_help,
            ["route", *labels],
            buckets=TTFT_BUCKETS,
            registry=registry,
        ),
        tokens_per_second=Histogram(
            "tokens_per_second",
            tokens_per_second_help,
            labels,
            buckets=TPS_BUCKETS,
            registry=registry,
        ),
        tpot=Histogram(
            "llm_time_per_output_token_seconds",
            tpot_help,
            ["route", *labels],
            buckets=TPOT_BUCKETS,
            registry=registry,
        ),
    )
