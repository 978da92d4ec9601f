"""Comparison mode and A/B decisions: significance tests on synthetic samples."""

from __future__ import annotations

import math

import pytest

from llmship.analysis import Phase, VersionStats, compare_to_stable, decide_experiment
from llmship.analysis.compare import significance

S, F, I = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE  # noqa: E741 (I for Inconclusive)


def errors(errors: int, requests: int) -> VersionStats:
    return VersionStats(requests=requests, errors=errors, error_rate=errors / requests)


def latencies(base: float, n: int = 60, step: float = 0.01) -> VersionStats:
    values = [base + step * i for i in range(n)]
    return VersionStats(requests=n, latencies=values, ttfts=[v / 10 for v in values])


def ratings(*counts: int) -> VersionStats:
    """Ratings with ``counts[k]`` ratings of k+1 stars."""
    values = [stars + 1 for stars, count in enumerate(counts) for _ in range(count)]
    return VersionStats(ratings=values)


def thumbs(up: int, down: int) -> VersionStats:
    return VersionStats(thumbs_up=up, thumbs_down=down)


@pytest.mark.parametrize(
    ("name", "candidate", "stable", "min_samples", "expected"),
    [
        # error rate: Fisher's exact test, one-sided
        ("error_rate", errors(20, 200), errors(2, 1000), 50, F),
        ("error_rate", errors(2, 200), errors(10, 1000), 50, S),
        ("error_rate", errors(0, 200), errors(10, 1000), 50, S),  # better is fine
        ("error_rate", errors(0, 500), errors(0, 500), 50, S),
        ("error_rate", errors(3, 200), errors(10, 1000), 50, S),  # 1.5% vs 1%: not significant
        ("error_rate", errors(5, 10), errors(0, 1000), 50, I),  # too few candidate requests
        ("error_rate", errors(5, 100), VersionStats(), 50, I),  # no stable traffic
        # latency and TTFT: Mann-Whitney U, one-sided
        ("latency_p95", latencies(1.5), latencies(1.0), 30, F),
        ("latency_p50", latencies(1.0), latencies(1.0), 30, S),
        ("latency_p99", latencies(0.5), latencies(1.0), 30, S),  # faster is fine
        ("ttft_p95", latencies(1.5), latencies(1.0), 30, F),
        ("latency_p95", latencies(1.5, n=10), latencies(1.0), 30, I),
        # feedback: Mann-Whitney U on the ratings, one-sided (lower is worse)
        ("feedback_mean", ratings(10, 30, 10, 0, 0), ratings(0, 0, 10, 30, 10), 30, F),
        ("feedback_mean", ratings(0, 0, 10, 30, 10), ratings(10, 30, 10, 0, 0), 30, S),
        ("feedback_mean", ratings(0, 5, 20, 20, 5), ratings(0, 5, 20, 20, 5), 30, S),
        ("feedback_mean", ratings(0, 0, 1, 2, 1), ratings(0, 0, 10, 30, 10), 30, I),
        # thumbs-up rate: Fisher's exact test, one-sided (lower is worse)
        ("thumbs_up_rate", thumbs(10, 40), thumbs(40, 10), 30, F),
        ("thumbs_up_rate", thumbs(40, 10), thumbs(10, 40), 30, S),
        ("thumbs_up_rate", thumbs(3, 3), thumbs(40, 10), 30, I),
    ],
)
def test_compare_to_stable(
    name: str, candidate: VersionStats, stable: VersionStats, min_samples: int, expected: Phase
) -> None:
    measurement = compare_to_stable(name, candidate, stable, alpha=0.05, min_samples=min_samples)
    assert measurement.phase == expected, measurement.message
    if expected == I:
        assert math.isnan(measurement.value)
        assert "minSamples" in measurement.message
    else:
        assert 0.0 <= measurement.value <= 1.0  # the p-value
        assert (measurement.value < 0.05) == (expected == F)
        assert name in measurement.message and "p=" in measurement.message


def test_alpha_decides_borderline_cases() -> None:
    candidate, stable = errors(6, 200), errors(10, 1000)  # 3% vs 1%
    p = compare_to_stable("error_rate", candidate, stable).value
    assert 0.01 < p < 0.05
    assert compare_to_stable("error_rate", candidate, stable, alpha=0.05).phase == F
    assert compare_to_stable("error_rate", candidate, stable, alpha=0.01).phase == S


def test_error_counts_come_from_the_rate_when_absent() -> None:
    candidate = VersionStats(requests=200, error_rate=0.1)
    p_from_rate, larger = significance("error_rate", candidate, errors(2, 1000), "greater")
    assert larger and p_from_rate < 0.001


def test_only_comparable_metrics() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        significance("request_count", VersionStats(), VersionStats(), "greater")


@pytest.mark.parametrize(
    ("name", "candidate", "stable", "higher_is_better", "expected"),
    [
        ("feedback_mean", ratings(0, 0, 5, 20, 25), ratings(0, 5, 25, 15, 5), None, S),
        ("feedback_mean", ratings(0, 5, 25, 15, 5), ratings(0, 0, 5, 20, 25), None, F),
        ("feedback_mean", ratings(0, 5, 20, 20, 5), ratings(0, 5, 20, 20, 5), None, I),
        ("feedback_mean", ratings(0, 0, 1, 2, 1), ratings(0, 0, 5, 20, 25), None, I),
        # an explicit direction wins over the metric's own
        ("feedback_mean", ratings(0, 0, 5, 20, 25), ratings(0, 5, 25, 15, 5), False, F),
        ("thumbs_up_rate", thumbs(45, 5), thumbs(25, 25), None, S),
        ("thumbs_up_rate", thumbs(25, 25), thumbs(45, 5), True, F),
        # lower is better for errors and latency
        ("error_rate", errors(1, 1000), errors(30, 1000), None, S),
        ("error_rate", errors(30, 1000), errors(1, 1000), None, F),
        ("latency_p95", latencies(0.5), latencies(1.0), None, S),
        ("latency_p95", latencies(1.5), latencies(1.0), None, F),
        ("latency_p95", latencies(1.0), latencies(1.0), None, I),
    ],
)
def test_decide_experiment(
    name: str,
    candidate: VersionStats,
    stable: VersionStats,
    higher_is_better: bool | None,
    expected: Phase,
) -> None:
    measurement = decide_experiment(
        name, candidate, stable, higher_is_better=higher_is_better, alpha=0.05, min_samples=30
    )
    assert measurement.phase == expected, measurement.message
