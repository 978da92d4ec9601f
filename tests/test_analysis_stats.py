"""Builtin metrics derived from the gateway's per-version statistics."""

from __future__ import annotations

import math

import pytest

from _stats import InMemoryStats
from llmship.analysis import BUILTIN_METRICS, VersionStats, builtin_value
from llmship.analysis.stats import (
    GoodputSlo,
    goodput,
    quantile,
    sample_size,
    time_per_output_token,
)

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
    tpots=[0.01 * i for i in range(1, 6)],
    # (e2e, ttft, tpot) of the 9 successes: 4 non-streamed (no TTFT, no TPOT)
    timings=[
        (1.0, 0.1, 0.01),
        (2.0, 0.2, 0.02),
        (3.0, 0.3, 0.03),
        (4.0, 3.0, 0.04),  # TTFT above the default 2 s
        (5.0, 0.5, 0.5),  # TPOT above the default 100 ms
        (6.0, None, None),
        (7.0, None, None),
        (8.0, None, None),
        (40.0, None, None),  # E2E above the default 30 s
    ],
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
        ("tpot_p50", 0.03, 5),
        ("tpot_p95", 0.048, 5),
        ("tpot_p99", 0.0496, 5),
        # good: 3 streamed + 3 non-streamed; judged: 9 successes + 1 error
        ("goodput", 0.6, 10),
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
        "tpot_p50",
        "tpot_p95",
        "tpot_p99",
        "goodput",
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


@pytest.mark.parametrize(
    ("e2e", "ttft", "tokens", "expected"),
    [
        (1.1, 0.1, 11, 0.1),  # 10 tokens after the first in 1 s
        (0.5, 0.1, 2, 0.4),
        (0.5, 0.1, 1, None),  # one token: nothing after the first
        (0.5, 0.1, 0, None),
        (0.5, None, 20, None),  # not streamed: no first token, no TPOT
        (0.1, 0.2, 3, 0.0),  # clocks apart: never negative
    ],
)
def test_tpot_is_vllms(e2e: float, ttft: float | None, tokens: int, expected: float | None) -> None:
    result = time_per_output_token(e2e, ttft, tokens)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (GoodputSlo(), 6 / 10),
        (GoodputSlo(ttft=5.0), 7 / 10),  # the slow first token is now good
        (GoodputSlo(ttft=5.0, tpot=1.0, e2e=60.0), 9 / 10),  # only the error is not
        (GoodputSlo(e2e=2.5), 2 / 10),  # the 1 s and 2 s answers
        (GoodputSlo(tpot=0.015), 4 / 10),  # one streamed answer and the three whole ones
    ],
)
def test_goodput_is_the_share_that_met_every_slo(slo: GoodputSlo, expected: float) -> None:
    assert goodput(STATS, slo) == pytest.approx(expected)
    assert builtin_value("goodput", STATS, slo) == pytest.approx(expected)


def test_goodput_counts_errors_and_needs_requests() -> None:
    assert goodput(VersionStats(requests=3, errors=3)) == 0.0  # all failed: none good
    assert math.isnan(goodput(VersionStats()))
    assert sample_size("goodput", VersionStats(requests=3, errors=3)) == 3
