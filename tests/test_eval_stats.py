"""Paired statistics: the bootstrap agrees with sacrebleu's ``--paired-bs``; Wilcoxon and
McNemar agree with scipy and with hand-computed values."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF
from sacrebleu.significance import PairedTest
from scipy import stats as scipy_stats

from llmship.eval import metrics, stats
from llmship.eval.assertions import AssertionResult, CaseResult
from llmship.eval.dataset import Case

EN_WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "in", "mat", "park", "big"]
EN_WORDS += ["small", "red", "blue", "house", "tree", "old", "new"]
ZH_CHARS = list("量子计算机器学习人工智能天气北京今天很好的是一个利用原理")


def _systems(
    seed: int, n: int, noise_base: float, noise_cand: float, zh: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """References and two noisy systems built from them (same vocabulary)."""
    rng = random.Random(seed)
    vocab = ZH_CHARS if zh else EN_WORDS
    joiner = "" if zh else " "

    def noisy(tokens: list[str], p: float) -> str:
        return joiner.join(t if rng.random() > p else rng.choice(vocab) for t in tokens)

    refs_tokens = [rng.choices(vocab, k=rng.randint(6, 16)) for _ in range(n)]
    refs = [joiner.join(t) for t in refs_tokens]
    base = [noisy(t, noise_base) for t in refs_tokens]
    cand = [noisy(t, noise_cand) for t in refs_tokens]
    return refs, base, cand


PAIRS = [
    pytest.param(1, 200, 0.30, 0.34, False, id="en-clear"),
    pytest.param(2, 60, 0.30, 0.31, False, id="en-close"),
    pytest.param(3, 40, 0.25, 0.25, False, id="en-same-noise"),
    pytest.param(4, 80, 0.30, 0.27, True, id="zh-better"),
    pytest.param(5, 30, 0.20, 0.22, True, id="zh-close"),
]


@pytest.mark.parametrize(("seed", "n", "noise_base", "noise_cand", "zh"), PAIRS)
@pytest.mark.parametrize("rng_seed", [12345, 7])
def test_paired_bootstrap_agrees_with_sacrebleus_paired_bs(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    n: int,
    noise_base: float,
    noise_cand: float,
    zh: bool,
    rng_seed: int,
) -> None:
    refs, base, cand = _systems(seed, n, noise_base, noise_cand, zh)
    tok = "zh" if zh else "13a"
    monkeypatch.setenv("SACREBLEU_SEED", str(rng_seed))
    signatures, scores = PairedTest(
        [("baseline", base), ("candidate", cand)],
        {"BLEU": BLEU(tokenize=tok), "chrF": CHRF()},
        [refs],
        test_type="bs",
        n_samples=1000,
    )()
    sb_bleu, sb_chrf = scores["BLEU"][1], scores["chrF2"][1]
    assert not isinstance(sb_bleu, str) and not isinstance(sb_chrf, str)
    assert sb_bleu.mean is not None and sb_bleu.ci is not None
    assert sb_chrf.mean is not None and sb_chrf.ci is not None

    ref_sets = [[r] for r in refs]
    bleu = stats.paired_bootstrap_bleu(base, cand, ref_sets, seed=rng_seed)
    chrf = stats.paired_bootstrap_chrf(base, cand, ref_sets, seed=rng_seed)

    assert bleu.candidate == pytest.approx(sb_bleu.score, abs=1e-9)
    assert bleu.p_value == pytest.approx(sb_bleu.p_value, abs=1e-3)
    assert bleu.candidate_mean == pytest.approx(sb_bleu.mean, abs=1e-6)
    assert bleu.candidate_ci == pytest.approx(sb_bleu.ci, abs=1e-6)
    assert bleu.baseline == pytest.approx(scores["BLEU"][0].score, abs=1e-9)  # type: ignore[union-attr]
    assert bleu.signature == signatures["BLEU"].format()
    assert f"bs:1000|seed:{rng_seed}|" in bleu.signature and f"tok:{tok}" in bleu.signature

    assert chrf.candidate == pytest.approx(sb_chrf.score / 100, abs=1e-9)
    assert chrf.p_value == pytest.approx(sb_chrf.p_value, abs=1e-3)
    assert chrf.candidate_mean == pytest.approx(sb_chrf.mean / 100, abs=1e-6)
    assert chrf.candidate_ci == pytest.approx(sb_chrf.ci / 100, abs=1e-6)
    assert chrf.signature == signatures["chrF2"].format()

    for result in (bleu, chrf):
        assert result.n == n and result.n_resamples == 1000 and result.seed == rng_seed
        assert result.ci_low <= result.delta <= result.ci_high


def test_paired_bootstrap_agrees_with_the_sacrebleu_command(tmp_path: Path) -> None:
    refs, base, cand = _systems(2, 60, 0.30, 0.31)
    files = {}
    for name, lines in (("ref", refs), ("base", base), ("cand", cand)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "sacrebleu", str(files["ref"]), "-i", str(files["base"])]
    command += [str(files["cand"]), "-m", "bleu", "--paired-bs", "--format", "json"]
    completed = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=60, env={"PATH": ""}
    )
    rows = json.loads(completed.stdout)
    theirs = rows[1]["BLEU"]
    ours = stats.paired_bootstrap_bleu(base, cand, [[r] for r in refs])
    assert ours.candidate == pytest.approx(theirs["score"], abs=1e-9)
    assert ours.p_value == pytest.approx(theirs["p_value"], abs=1e-3)
    assert ours.candidate_mean == pytest.approx(theirs["mean"], abs=1e-6)
    assert ours.candidate_ci == pytest.approx(theirs["ci"], abs=1e-6)
    assert 0.01 < ours.p_value < 1  # a close pair: the test is not decided at the floor


def test_a_clearly_worse_system_is_significant_and_its_ci_excludes_zero() -> None:
    refs, base, cand = _systems(1, 200, 0.10, 0.50)
    result = stats.paired_bootstrap_bleu(base, cand, [[r] for r in refs])
    assert result.delta < 0
    assert result.ci_high < 0
    assert result.p_value == pytest.approx(1 / 1001)
    assert result.significant(0.05)


def test_identical_systems_are_never_significant() -> None:
    refs, base, _ = _systems(9, 50, 0.3, 0.3)
    result = stats.paired_bootstrap_bleu(base, base, [[r] for r in refs])
    assert result.delta == 0 and result.ci_low == 0 and result.ci_high == 0
    assert result.p_value == 1.0
    assert not result.significant()
    # The one place we depart from sacrebleu, which calls a system against itself
    # significant: every resampled |delta| is 0, and "0 > 0" is never counted.
    _, scores = PairedTest(
        [("a", base), ("b", list(base))], {"BLEU": BLEU()}, [refs], test_type="bs"
    )()
    assert scores["BLEU"][1].p_value == pytest.approx(1 / 1001)  # type: ignore[union-attr]


def test_bootstrap_is_deterministic_per_seed() -> None:
    refs, base, cand = _systems(2, 60, 0.30, 0.31)
    ref_sets = [[r] for r in refs]
    first = stats.paired_bootstrap_bleu(base, cand, ref_sets, seed=3)
    assert stats.paired_bootstrap_bleu(base, cand, ref_sets, seed=3) == first
    assert stats.paired_bootstrap_bleu(base, cand, ref_sets, seed=4) != first


def test_paired_bootstrap_of_a_mean() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 100)
    cand = base - 0.2 + rng.normal(0, 0.05, 100)
    result = stats.paired_bootstrap_mean(list(base), list(cand), metric="rouge_l")
    assert result.delta == pytest.approx(float(cand.mean() - base.mean()))
    assert result.ci_low < result.delta < result.ci_high < 0
    assert result.p_value < 0.01


def test_paired_bootstrap_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="two"):
        stats.paired_bootstrap([[1.0]], [[1.0], [2.0]], lambda s: float(s[0]), metric="x")
    with pytest.raises(ValueError, match="at least one"):
        stats.paired_bootstrap_mean([], [], metric="x")


# --- Wilcoxon and McNemar ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, 40)
    cand = np.clip(base + rng.normal(-0.05, 0.1, 40), 0, 1)
    result = stats.wilcoxon(list(base), list(cand), metric="rouge_l")
    assert result.p_value == pytest.approx(scipy_stats.wilcoxon(cand, base).pvalue)
    assert result.delta == pytest.approx(float(cand.mean() - base.mean()))
    assert result.baseline == pytest.approx(float(base.mean()))
    assert result.ci_low <= result.delta <= result.ci_high
    assert result.test == "wilcoxon" and result.n == 40


def test_wilcoxon_with_no_difference() -> None:
    result = stats.wilcoxon([0.1, 0.5, 0.9], [0.1, 0.5, 0.9], metric="rouge_l")
    assert result.p_value == 1.0 and result.delta == 0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("lost", "gained", "same", "p_value"),
    [
        (0, 0, 10, 1.0),
        (6, 0, 4, 2 * 0.5**6),  # exact two-sided binomial: 0.03125
        (0, 6, 4, 2 * 0.5**6),
        (3, 1, 20, 0.625),  # 2 * P(X <= 1 | n=4) = 2 * 5/16
        (10, 2, 0, float(scipy_stats.binomtest(2, 12, 0.5).pvalue)),
    ],
)
def test_mcnemar_exact(lost: int, gained: int, same: int, p_value: float) -> None:
    baseline = [True] * lost + [False] * gained + [True] * same
    candidate = [False] * lost + [True] * gained + [True] * same
    result = stats.mcnemar(baseline, candidate)
    assert result.p_value == pytest.approx(p_value)
    n = lost + gained + same
    assert result.delta == pytest.approx((gained - lost) / n)
    assert result.baseline == pytest.approx((lost + same) / n)
    assert result.candidate == pytest.approx((gained + same) / n)
    assert result.ci_low <= result.delta <= result.ci_high
    assert result.metric == "pass_rate" and result.test == "mcnemar"


# --- a whole run ---------------------------------------------------------------------------


def _result(case_id: str, passed: bool, score: float) -> CaseResult:
    one = AssertionResult(type="contains", passed=passed, score=score, reason="")
    return CaseResult(case_id=case_id, passed=passed, score=score, assertions=(one,))


def test_compare_outputs_covers_every_gated_metric() -> None:
    refs, base, cand = _systems(6, 30, 0.2, 0.3)
    cases = [Case(id=str(i), line=i, input="q", references=(r,)) for i, r in enumerate(refs)]
    cases.append(Case(id="no-ref", line=99, input="q"))
    base_out, cand_out = [*base, "x"], [*cand, "y"]
    base_results = [_result(c.id, True, 1.0) for c in cases]
    cand_results = [_result(c.id, i % 3 != 0, 0.5) for i, c in enumerate(cases)]
    compared = stats.compare_outputs(
        cases,
        base_out,
        cand_out,
        baseline_results=base_results,
        candidate_results=cand_results,
        seed=11,
    )
    assert set(compared) == {*metrics.CORPUS_METRICS, "pass_rate", "score"}
    assert compared["bleu"].test == "paired_bootstrap"
    assert compared["bleu"].n == 30
    assert compared["bleu"].baseline == pytest.approx(
        metrics.corpus_bleu(base, [[r] for r in refs]).score
    )
    assert compared["rouge_l"].test == "wilcoxon"
    assert compared["exact_match"].test == "mcnemar"
    assert compared["pass_rate"].n == 31
    assert compared["pass_rate"].delta == pytest.approx(-11 / 31)
    assert all(c.seed == 11 for c in compared.values())
    assert compared["chrf"].to_dict()["metric"] == "chrf"
