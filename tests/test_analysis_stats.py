"""Builtin metrics derived from the gateway's per-version statistics."""

from __future__ import annotations

import math

import pytest

from _stats import InMemoryStats
from llmship.analysis import BUILTIN_METRICS, VersionStats, builtin_value
from llmship.analysis.stats import quantile, sample_size

STATS = VersionStats(
    requests=10,
    errors=1,
    error_rate=0.1,
    latencies=[float(i) for i in range(1, 11)],  # 1..10 s
    ttfts=[0.1 * i for i in range(1, 11)],
    tokens_per_second=120.0,
    ratings=[5, 4, 3],
    thumbs_up=3,
    thumbs_down=1,
    shadow_similarities=[0.5, 0.7, 0.9],
)


@pytest.mark.parametrize(
    ("name", "expected", "samples"),
    [
        ("error_rate", 0.1, 10),
        ("latency_p50", 5.5, 10),
        ("latency_p95", 9.55, 10),
        ("latency_p99", 9.91, 10),
        ("ttft_p50", 0.55, 10),
        ("ttft_p95", 0.955, 10),
        ("ttft_p99", 0.991, 10),
        ("tokens_per_second", 120.0, 10),
        ("request_count", 10.0, 10),
        ("feedback_mean", 4.0, 3),
        ("thumbs_up_rate", 0.75, 4),
        ("shadow_similarity", 0.7, 3),
    ],
)
def test_builtin_values(name: str, expected: float, samples: int) -> None:
    assert builtin_value(name, STATS) == pytest.approx(expected)
    assert sample_size(name, STATS) == samples


def test_every_builtin_metric_has_a_test_row() -> None:
    names = {
        "error_rate",
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "ttft_p50",
        "ttft_p95",
        "ttft_p99",
        "tokens_per_second",
        "request_count",
        "feedback_mean",
        "thumbs_up_rate",
        "shadow_similarity",
    }
    assert set(BUILTIN_METRICS) == names


@pytest.mark.parametrize("name", [n for n in BUILTIN_METRICS if n != "request_count"])
def test_no_data_is_nan(name: str) -> None:
    assert math.isnan(builtin_value(name, VersionStats()))


def test_request_count_is_never_nan() -> None:
    assert builtin_value("request_count", VersionStats()) == 0.0


def test_error_rate_falls_back_to_the_counts() -> None:
    assert builtin_value("error_rate", VersionStats(requests=4, errors=1)) == 0.25


def test_unknown_metric() -> None:
    with pytest.raises(KeyError):
        builtin_value("errors", STATS)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, math.nan), ([3.0], 0.99, 3.0), ([1.0, 2.0], 0.5, 1.5), ([4.0, 1.0, 3.0], 0.0, 1.0)],
)
def test_quantile(values: list[float], q: float, expected: float) -> None:
    result = quantile(values, q)
    assert (math.isnan(result) and math.isnan(expected)) or result == expected


def test_version_stats_round_trip_and_tolerate_gaps() -> None:
    assert VersionStats.from_dict(STATS.to_dict()) == STATS
    partial = VersionStats.from_dict({"requests": 3, "error_rate": None, "extra": 1})
    assert partial.requests == 3 and math.isnan(partial.error_rate) and partial.latencies == []
    with pytest.raises(ValueError, match="not version statistics"):
        VersionStats.from_dict({"latencies": ["fast"]})


def test_in_memory_stats_records_calls() -> None:
    source = InMemoryStats()
    source.set("prod", "chat@2.0.0", STATS)
    assert source.stats("prod", "chat@2.0.0", 30.0) == STATS
    assert source.stats("prod", "chat@1.0.0", 30.0) == VersionStats()
    assert source.calls == [("prod", "chat@2.0.0", 30.0), ("prod", "chat@1.0.0", 30.0)]
