"""The paired significance tests of a candidate against a baseline on the same cases.

Which metric takes which test is said by the metric table (:mod:`llmship.eval.metric_table`);
:func:`llmship.eval.stats.compare_outputs` runs them all. Each test returns a
:class:`Comparison`: the two values, ``delta`` (candidate minus baseline, in the metric's
units), a 95% confidence interval of the delta, a two-sided p-value and ``n`` (the number
of paired cases).

- **Corpus BLEU and chrF: paired bootstrap resampling, as ``sacrebleu --paired-bs``**
  (``sacrebleu/significance.py``): the same resampled case indices for both
  systems (``numpy.random.default_rng(seed).choice(n, (R, n))``), corpus scores
  recomputed from summed sufficient statistics, the observed statistic
  ``|candidate - baseline|``, the null distribution the resampled
  ``|delta|`` minus their mean, ``p = (#(null > observed) + 1) / (R + 1)``.
  R defaults to 1000 and the seed to 12345 (sacrebleu's ``SACREBLEU_SEED``).
  One deliberate difference: when the two corpus scores are equal, p is 1.0
  (sacrebleu gives identical systems ``1 / (R + 1)``, "significant").
  The CI of the delta takes the same order statistics sacrebleu uses for its
  CI (index ``R // 40`` from each end of the sorted resampled deltas); the
  candidate's bootstrap mean and half-width are sacrebleu's ``μ ± CI``.
- **Per-case continuous scores (ROUGE): Wilcoxon signed-rank** (scipy, two-sided,
  zero differences dropped); the delta is the difference of the means.
- **Per-case pass/fail (exact match, accuracy, pass rate): exact McNemar**, the
  two-sided binomial test on the discordant pairs; the delta is the difference
  of the rates.

For Wilcoxon and McNemar the CI is the same seeded paired bootstrap of the mean
difference (percentile interval, the same order statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

from llmship.eval import scoring

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Comparison",
    "mcnemar",
    "paired_bootstrap",
    "paired_bootstrap_bleu",
    "paired_bootstrap_chrf",
    "paired_bootstrap_mean",
    "wilcoxon",
]

DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples (sacrebleu's ``--paired-bs-n`` default)."""
DEFAULT_SEED = 12345
"""The RNG seed (sacrebleu's ``SACREBLEU_SEED`` default); recorded in every result."""


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of one metric: candidate against baseline."""

    metric: str
    test: str
    """``paired_bootstrap``, ``wilcoxon`` or ``mcnemar``."""
    baseline: float
    candidate: float
    delta: float
    """candidate - baseline, in the metric's units (negative: the candidate is worse)."""
    ci_low: float
    ci_high: float
    """The 95% confidence interval of ``delta``."""
    p_value: float
    """Two-sided: how likely a difference this large is if both are the same system."""
    n: int
    seed: int | None = None
    n_resamples: int | None = None
    signature: str | None = None
    """sacrebleu's signature with ``bs`` and ``seed``, for BLEU and chrF."""
    candidate_mean: float | None = None
    """The candidate's bootstrap mean (sacrebleu's μ), for the paired bootstrap."""
    candidate_ci: float | None = None
    """Half-width of the candidate's 95% bootstrap interval (sacrebleu's ±)."""

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# --- paired bootstrap ----------------------------------------------------------------------


def _resample_indices(n: int, n_resamples: int, seed: int | None) -> NDArray[np.int64]:
    """sacrebleu's resampling: one (R, n) draw of case indices with replacement."""
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=(n_resamples, n), replace=True)


def _resampled_sums(stats: NDArray[np.float64], idxs: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per resample, the sum of the chosen rows of ``stats`` (R, k).

    The same sums as ``stats[idxs].sum(1)`` without the (R, n, k) array; exact for
    integer statistics.
    """
    n_resamples, n = idxs.shape
    counts = np.zeros((n_resamples, n), dtype=np.float64)
    rows = np.repeat(np.arange(n_resamples), n)
    np.add.at(counts, (rows, idxs.ravel()), 1.0)
    return counts @ stats


def _order_statistics(values: NDArray[np.float64]) -> tuple[float, float]:
    """The 95% interval as sacrebleu takes it: index R // 40 from both ends of the sorted values."""
    ordered = np.sort(values)
    lower = len(ordered) // 40
    upper = len(ordered) - lower - 1
    return float(ordered[lower]), float(ordered[upper])


def paired_bootstrap(
    baseline_stats: Sequence[Sequence[float]] | NDArray[Any],
    candidate_stats: Sequence[Sequence[float]] | NDArray[Any],
    score: Callable[[NDArray[np.float64]], float],
    *,
    metric: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
    scale: float = 1.0,
    signature: str | None = None,
    observed: tuple[float, float] | None = None,
) -> Comparison:
    """Paired bootstrap over per-case sufficient statistics (sacrebleu's ``paired_bs``).

    ``baseline_stats[i]`` and ``candidate_stats[i]`` are the statistics of case i
    (one row each, same width); ``score`` turns summed statistics into the corpus
    score. Every value reported is multiplied by ``scale`` (0.01 puts chrF on 0..1);
    the p-value does not depend on it. ``observed`` gives the (baseline, candidate)
    scores on all cases when they are computed otherwise than ``score(sum)``.
    """
    base = np.asarray(baseline_stats, dtype=np.float64)
    cand = np.asarray(candidate_stats, dtype=np.float64)
    if base.ndim != 2 or base.shape != cand.shape:
        raise ValueError(f"statistics must be two (n, k) arrays, got {base.shape} and {cand.shape}")
    n = base.shape[0]
    if n == 0:
        raise ValueError("a paired bootstrap needs at least one case")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")

    if observed is not None:
        base_score, cand_score = observed
    else:
        base_score, cand_score = score(base.sum(0)), score(cand.sum(0))
    idxs = _resample_indices(n, n_resamples, seed)
    base_samples = np.array([score(row) for row in _resampled_sums(base, idxs)])
    cand_samples = np.array([score(row) for row in _resampled_sums(cand, idxs)])

    observed_diff = abs(base_score - cand_score)
    sample_diffs = np.abs(cand_samples - base_samples)
    null = sample_diffs - sample_diffs.mean()
    p_value = (int(np.sum(null > observed_diff)) + 1) / (n_resamples + 1)
    if observed_diff == 0:
        # sacrebleu reports 1 / (R + 1) here: with identical systems every resampled
        # difference is 0 and "0 > 0" never counts. No difference is no evidence.
        p_value = 1.0

    ci_low, ci_high = _order_statistics(cand_samples - base_samples)
    low, high = _order_statistics(cand_samples)
    return Comparison(
        metric=metric,
        test="paired_bootstrap",
        baseline=base_score * scale,
        candidate=cand_score * scale,
        delta=(cand_score - base_score) * scale,
        ci_low=ci_low * scale,
        ci_high=ci_high * scale,
        p_value=p_value,
        n=n,
        seed=seed,
        n_resamples=n_resamples,
        signature=signature,
        candidate_mean=float(cand_samples.mean()) * scale,
        candidate_ci=0.5 * (high - low) * scale,
    )


def _sacrebleu_bootstrap(
    metric: Any,
    name: str,
    baseline: Sequence[str],
    candidate: Sequence[str],
    references: Sequence[Sequence[str]],
    n_resamples: int,
    seed: int | None,
    scale: float,
) -> Comparison:
    if not (len(baseline) == len(candidate) == len(references)):
        raise ValueError(
            f"{len(baseline)} baseline outputs, {len(candidate)} candidate outputs "
            f"and {len(references)} reference sets"
        )
    streams = scoring.reference_streams(references)
    # sacrebleu's own sufficient statistics and score function (what --paired-bs uses).
    base_stats = metric._extract_corpus_statistics(list(baseline), streams)
    cand_stats = metric._extract_corpus_statistics(list(candidate), streams)
    signature = metric.get_signature()
    signature.update("bs", n_resamples)
    signature.update("seed", str(seed).lower())
    observed = (
        float(metric._aggregate_and_compute(base_stats).score),
        float(metric._aggregate_and_compute(cand_stats).score),
    )
    return paired_bootstrap(
        base_stats,
        cand_stats,
        # float32 sums, as sacrebleu computes its resampled scores.
        lambda summed: float(metric._compute_score_from_stats(summed.astype(np.float32)).score),
        observed=observed,
        metric=name,
        n_resamples=n_resamples,
        seed=seed,
        scale=scale,
        signature=str(signature.format()),
    )


def paired_bootstrap_bleu(
    baseline: Sequence[str],
    candidate: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> Comparison:
    """Corpus BLEU (0..100) of two systems on the same cases, paired bootstrap.

    ``references[i]`` are the references of case i; the tokenizer is chosen as
    in :func:`llmship.eval.scoring.corpus_bleu`.
    """
    tok = tokenize or scoring.bleu_tokenizer(r for refs in references for r in refs)
    return _sacrebleu_bootstrap(
        scoring.bleu_metric(tok), "bleu", baseline, candidate, references, n_resamples, seed, 1.0
    )


def paired_bootstrap_chrf(
    baseline: Sequence[str],
    candidate: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> Comparison:
    """Corpus chrF (0..1) of two systems on the same cases, paired bootstrap."""
    return _sacrebleu_bootstrap(
        scoring.chrf_metric(), "chrf", baseline, candidate, references, n_resamples, seed, 0.01
    )


def paired_bootstrap_mean(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    metric: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> Comparison:
    """The mean of per-case scores of two systems, paired bootstrap (same p-value rule)."""
    _check_pairs(baseline, candidate)
    n = len(baseline)
    return paired_bootstrap(
        [[float(x)] for x in baseline],
        [[float(x)] for x in candidate],
        lambda summed: float(summed[0]) / n,
        metric=metric,
        n_resamples=n_resamples,
        seed=seed,
    )


# --- rank and exact tests ------------------------------------------------------------------


def _mean_difference_ci(
    baseline: NDArray[np.float64],
    candidate: NDArray[np.float64],
    n_resamples: int,
    seed: int | None,
) -> tuple[float, float]:
    idxs = _resample_indices(len(baseline), n_resamples, seed)
    diffs = (candidate - baseline)[:, None]
    means = _resampled_sums(diffs, idxs)[:, 0] / len(baseline)
    return _order_statistics(means)


def wilcoxon(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    metric: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> Comparison:
    """Wilcoxon signed-rank test on per-case scores (two-sided, zero differences dropped).

    ``delta`` is mean(candidate) - mean(baseline); p is 1.0 when no case differs.
    """
    _check_pairs(baseline, candidate)
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    diffs = cand - base
    if np.count_nonzero(diffs) == 0:
        p_value = 1.0
    else:
        p_value = float(scipy_stats.wilcoxon(cand, base, zero_method="wilcox").pvalue)
        if math.isnan(p_value):
            p_value = 1.0
    ci_low, ci_high = _mean_difference_ci(base, cand, n_resamples, seed)
    return Comparison(
        metric=metric,
        test="wilcoxon",
        baseline=float(base.mean()),
        candidate=float(cand.mean()),
        delta=float(diffs.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        n=len(base),
        seed=seed,
        n_resamples=n_resamples,
    )


def mcnemar(
    baseline: Sequence[bool],
    candidate: Sequence[bool],
    *,
    metric: str = "pass_rate",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> Comparison:
    """Exact McNemar test on per-case pass/fail (binomial test on the discordant pairs).

    ``delta`` is the candidate's pass rate minus the baseline's; p is 1.0 when
    no case changed outcome.
    """
    _check_pairs(baseline, candidate)
    base = np.asarray([bool(x) for x in baseline], dtype=np.float64)
    cand = np.asarray([bool(x) for x in candidate], dtype=np.float64)
    lost = int(np.sum((base == 1) & (cand == 0)))
    gained = int(np.sum((base == 0) & (cand == 1)))
    discordant = lost + gained
    p_value = 1.0
    if discordant:
        p_value = float(scipy_stats.binomtest(gained, discordant, 0.5).pvalue)
    ci_low, ci_high = _mean_difference_ci(base, cand, n_resamples, seed)
    return Comparison(
        metric=metric,
        test="mcnemar",
        baseline=float(base.mean()),
        candidate=float(cand.mean()),
        delta=(gained - lost) / len(base),
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=min(p_value, 1.0),
        n=len(base),
        seed=seed,
        n_resamples=n_resamples,
    )


def _check_pairs(baseline: Sequence[Any], candidate: Sequence[Any]) -> None:
    if len(baseline) != len(candidate):
        raise ValueError(f"{len(baseline)} baseline values but {len(candidate)} candidate values")
    if not baseline:
        raise ValueError("a paired test needs at least one case")
