"""Candidate against stable over the same window: significance tests instead of thresholds.

Two uses:

- **Comparison mode** of a builtin metric (``compare: stable``),
  :func:`compare_to_stable`: a one-sided test of "the candidate is worse".
  Error rate: Fisher's exact test on the 2x2 table of errors and successes
  (alternative: the candidate's error odds are greater). Thumbs-up rate: the
  same test on thumbs up and down (alternative: the candidate's are lower).
  Latency, TTFT and TPOT quantiles: the Mann-Whitney U test on the per-request
  samples (alternative: the candidate's are stochastically greater) — it judges
  the whole distribution, not the named quantile. Feedback: Mann-Whitney on the
  ratings (alternative: the candidate's are lower). ``p < alpha`` is Failed,
  otherwise Successful; fewer than ``minSamples`` samples on either side is
  Inconclusive. The measurement's value is the p-value.
- **A/B experiments**, :func:`decide_experiment`: the same tests, two-sided; a
  significant difference in the candidate's favour is Successful (it wins), one
  against it Failed, no significant difference Inconclusive.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

from llmship.analysis.phases import Measurement, Phase
from llmship.analysis.stats import (
    BUILTIN_METRICS,
    VersionStats,
    builtin_value,
    quantile_samples,
    sample_size,
)

__all__ = ["compare_to_stable", "decide_experiment", "significance"]

Alternative = Literal["greater", "less", "two-sided"]


def _errors(stats: VersionStats) -> int:
    errors = stats.errors
    if not errors and not math.isnan(stats.error_rate) and stats.requests:
        errors = round(stats.error_rate * stats.requests)
    return max(0, min(errors, stats.requests))


def _fisher(table: list[list[int]], alternative: Alternative) -> float:
    from scipy import stats as scipy_stats  # loaded when a test runs: ~1 s every CLI start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(scipy_stats.fisher_exact(table, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else min(p, 1.0)


def _mann_whitney(
    candidate: Sequence[float], stable: Sequence[float], alternative: Alternative
) -> tuple[float, bool]:
    """p-value, and whether the candidate's values tend to be the larger."""
    from scipy import stats as scipy_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.mannwhitneyu(
            list(candidate), list(stable), alternative=alternative, method="auto"
        )
    p = float(result.pvalue)
    larger = float(result.statistic) > len(candidate) * len(stable) / 2
    return (1.0 if math.isnan(p) else min(p, 1.0)), larger


def significance(
    name: str, candidate: VersionStats, stable: VersionStats, alternative: Alternative
) -> tuple[float, bool]:
    """p-value of the test for metric ``name``, and whether the candidate's metric is the
    larger (the rate, or the values in the Mann-Whitney sense).

    ``alternative`` is about the metric's own direction: ``greater`` tests "the
    candidate's error rate / latency / rating is higher". ValueError for a metric
    that cannot be compared.
    """
    info = BUILTIN_METRICS.get(name)
    if info is None or not info.comparable:
        raise ValueError(f"{name} cannot be compared between versions")
    if name in ("error_rate", "thumbs_up_rate"):
        if name == "error_rate":
            c_hits, c_total = _errors(candidate), candidate.requests
            s_hits, s_total = _errors(stable), stable.requests
        else:
            c_hits, c_total = candidate.thumbs_up, candidate.thumbs_up + candidate.thumbs_down
            s_hits, s_total = stable.thumbs_up, stable.thumbs_up + stable.thumbs_down
        table = [[c_hits, c_total - c_hits], [s_hits, s_total - s_hits]]
        larger = c_hits * s_total > s_hits * c_total
        return _fisher(table, alternative), larger
    if name == "feedback_mean":
        return _mann_whitney(
            [float(r) for r in candidate.ratings], [float(r) for r in stable.ratings], alternative
        )
    return _mann_whitney(
        quantile_samples(name, candidate), quantile_samples(name, stable), alternative
    )


def _describe(name: str, candidate: VersionStats, stable: VersionStats) -> str:
    c_n, s_n = sample_size(name, candidate), sample_size(name, stable)
    c_v, s_v = builtin_value(name, candidate), builtin_value(name, stable)
    return f"{name}: candidate {c_v:.4g} (n={c_n}) vs stable {s_v:.4g} (n={s_n})"


def _too_few(
    name: str, candidate: VersionStats, stable: VersionStats, min_samples: int
) -> Measurement | None:
    c_n, s_n = sample_size(name, candidate), sample_size(name, stable)
    if c_n >= min_samples and s_n >= min_samples:
        return None
    return Measurement(
        math.nan,
        Phase.INCONCLUSIVE,
        f"{_describe(name, candidate, stable)}: fewer than minSamples ({min_samples}) on one side",
    )


def compare_to_stable(
    name: str,
    candidate: VersionStats,
    stable: VersionStats,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> Measurement:
    """Is the candidate significantly worse than stable on metric ``name``?

    Failed when it is (``p < alpha``), Successful when it is not, Inconclusive with
    fewer than ``min_samples`` samples on either side; the value is the p-value.
    """
    too_few = _too_few(name, candidate, stable, min_samples)
    if too_few is not None:
        return too_few
    worse: Alternative = "less" if BUILTIN_METRICS[name].higher_is_better else "greater"
    p, _ = significance(name, candidate, stable, worse)
    described = _describe(name, candidate, stable)
    if p < alpha:
        return Measurement(
            p, Phase.FAILED, f"{described}: significantly worse (p={p:.4g} < alpha {alpha:g})"
        )
    return Measurement(
        p, Phase.SUCCESSFUL, f"{described}: not significantly worse (p={p:.4g}, alpha {alpha:g})"
    )


def decide_experiment(
    name: str,
    candidate: VersionStats,
    stable: VersionStats,
    *,
    higher_is_better: bool | None = None,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> Measurement:
    """The winner of an A/B experiment on metric ``name`` (two-sided test at ``alpha``).

    Successful when the candidate is significantly better, Failed when significantly
    worse, Inconclusive when the difference is not significant or either side has
    fewer than ``min_samples`` samples. ``higher_is_better`` defaults to the
    metric's own direction (true for feedback, false for errors and latency).
    """
    too_few = _too_few(name, candidate, stable, min_samples)
    if too_few is not None:
        return too_few
    if higher_is_better is None:
        higher_is_better = BUILTIN_METRICS[name].higher_is_better
    p, larger = significance(name, candidate, stable, "two-sided")
    described = _describe(name, candidate, stable)
    if p >= alpha:
        return Measurement(
            p, Phase.INCONCLUSIVE, f"{described}: no significant difference (p={p:.4g})"
        )
    if larger == higher_is_better:
        return Measurement(p, Phase.SUCCESSFUL, f"{described}: the candidate is better (p={p:.4g})")
    return Measurement(p, Phase.FAILED, f"{described}: the candidate is worse (p={p:.4g})")
