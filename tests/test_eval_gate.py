"""The eval gate: one table row per branch of the rule, A/A never fails, a worse candidate does."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from llmship.eval import metrics
from llmship.eval.dataset import Case
from llmship.eval.metrics import CorpusScore
from llmship.eval.stats import Comparison, compare_outputs
from llmship.eval.verdict import (
    GATED_METRICS,
    EvalGateConfig,
    MetricGate,
    decide,
    judge_metric,
)


def _comparison(
    delta: float, p: float, ci: tuple[float, float], baseline: float = 30.0, metric: str = "bleu"
) -> Comparison:
    return Comparison(
        metric=metric,
        test="paired_bootstrap",
        baseline=baseline,
        candidate=baseline + delta,
        delta=delta,
        ci_low=ci[0],
        ci_high=ci[1],
        p_value=p,
        n=100,
    )


# (id, gate, candidate value, comparison, passed, failed rules, the reason)
RULES: list[Any] = [
    pytest.param(
        {"min": 0.45},
        0.41,
        None,
        False,
        ("minimum",),
        "rouge_l: 0.41 < minimum 0.45",
        id="a-below-minimum",
    ),
    pytest.param(
        {"min": 0.45}, 0.5, None, True, (), "rouge_l: 0.5 >= minimum 0.45", id="a-above-minimum"
    ),
    pytest.param(
        {"min": 0.45},
        0.41,
        _comparison(0.05, 0.001, (0.02, 0.08), baseline=0.36, metric="rouge_l"),
        False,
        ("minimum",),
        "rouge_l: 0.41 < minimum 0.45",
        id="a-minimum-holds-even-when-better-than-baseline",
    ),
    pytest.param(
        {"min_effect": 0.5},
        29.0,
        _comparison(-1.0, 0.01, (-1.8, -0.2)),
        False,
        ("significant_regression",),
        "bleu regressed by 1 (95% CI 0.2..1.8, p=0.01): significant at alpha 0.05 "
        "> minimum effect 0.5",
        id="b-significant-and-larger-than-min-effect",
    ),
    pytest.param(
        {},
        29.0,
        _comparison(-1.0, 0.01, (-1.8, -0.2)),
        False,
        ("significant_regression",),
        "bleu regressed by 1 (95% CI 0.2..1.8, p=0.01): significant at alpha 0.05",
        id="b-default-min-effect-is-zero",
    ),
    pytest.param(
        {"min_effect": 0.5, "max_regression": 1.0},
        29.7,
        _comparison(-0.3, 0.0005, (-0.4, -0.2)),
        True,
        (),
        "bleu changed by -0.3 (95% CI 0.2..0.4, p<0.001): below the minimum effect, "
        "within allowed 1",
        id="b-significant-but-smaller-than-min-effect",
    ),
    pytest.param(
        {"max_regression": 1.0},
        29.5,
        _comparison(-0.5, 0.05, (-1.0, 0.0)),
        True,
        (),
        "bleu changed by -0.5 (95% CI 0..1, p=0.05): not significant, within allowed 1",
        id="b-p-equal-to-alpha-is-not-significant",
    ),
    pytest.param(
        {"max_regression": 1.0, "min_effect": 0.5},
        26.8,
        _comparison(-3.2, 0.2, (-5.0, 1.1)),
        False,
        ("max_regression",),
        "bleu regressed by 3.2 (95% CI -1.1..5, p=0.2) > allowed 1",
        id="c-beyond-max-regression-though-not-significant",
    ),
    pytest.param(
        {"max_regression": 1.0},
        26.8,
        _comparison(-3.2, 0.003, (-5.0, -1.1)),
        False,
        ("max_regression", "significant_regression"),
        "bleu regressed by 3.2 (95% CI 1.1..5, p=0.003) > allowed 1",
        id="bc-beyond-max-regression-and-significant",
    ),
    pytest.param(
        {"max_regression": 1.0},
        29.0,
        _comparison(-1.0, 0.4, (-2.0, 0.5)),
        True,
        (),
        "bleu changed by -1 (95% CI -0.5..2, p=0.4): not significant, within allowed 1",
        id="c-exactly-max-regression-passes",
    ),
    pytest.param(
        {"max_regression": 1.0},
        32.0,
        _comparison(2.0, 0.001, (1.0, 3.0)),
        True,
        (),
        "bleu changed by 2 (95% CI -3..-1, p=0.001): no regression",
        id="significant-improvement-passes",
    ),
    pytest.param(
        {"alpha": 0.01},
        29.0,
        _comparison(-1.0, 0.03, (-1.9, -0.1)),
        True,
        (),
        "bleu changed by -1 (95% CI 0.1..1.9, p=0.03): not significant",
        id="per-metric-alpha",
    ),
    pytest.param(
        {"min": 0.1},
        None,
        None,
        False,
        ("not_measured",),
        "rouge_l: not measured (does the dataset have what it needs?)",
        id="not-measured",
    ),
]


@pytest.mark.parametrize(("gate", "value", "comparison", "passed", "rules", "reason"), RULES)
def test_gate_rule(
    gate: dict[str, float],
    value: float | None,
    comparison: Comparison | None,
    passed: bool,
    rules: tuple[str, ...],
    reason: str,
) -> None:
    name = comparison.metric if comparison is not None else "rouge_l"
    verdict = judge_metric(name, MetricGate(**gate), value, comparison, alpha=0.05)
    assert verdict.passed is passed
    assert verdict.failed_rules == rules
    assert reason in verdict.reasons, verdict.reasons


def test_decide_over_several_metrics() -> None:
    config = EvalGateConfig.model_validate(
        {
            "metrics": {
                "rouge_l": {"min": 0.45},
                "bleu": {"max_regression": 1.0},
                "pass_rate": {"min": 0.5},
            }
        }
    )
    bleu = _comparison(-3.2, 0.003, (-5.0, -1.1))
    decision = decide(
        config,
        {"rouge_l": CorpusScore(name="rouge_l", score=0.41, n=10), "pass_rate": 0.9},
        {"bleu": bleu},
    )
    assert not decision.passed
    assert decision.failures == (
        "rouge_l: 0.41 < minimum 0.45",
        "bleu regressed by 3.2 (95% CI 1.1..5, p=0.003) > allowed 1",
    )
    assert [v.metric for v in decision.verdicts] == ["rouge_l", "bleu", "pass_rate"]
    assert decision.verdicts[1].candidate == pytest.approx(26.8)  # from the comparison
    as_dict = decision.to_dict()
    assert as_dict["passed"] is False
    assert as_dict["verdicts"][1]["comparison"]["p_value"] == 0.003
    assert decide(EvalGateConfig(), {}).passed  # nothing configured, nothing required


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"metrics": {"rogue_l": {"min": 0.1}}}, "unknown metric(s) rogue_l"),
        ({"metrics": {"bleu": {"max_regression": 1, "min_effect": 2}}}, "min_effect 2 is larger"),
        ({"metrics": {"bleu": {"minimum": 1}}}, "Extra inputs are not permitted"),
        ({"metrics": {"bleu": {"max_regression": -1}}}, "greater than or equal to 0"),
        ({"alpha": 1.5}, "less than 1"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalGateConfig.model_validate(raw)


def test_every_gated_metric_is_something_we_compute() -> None:
    assert set(GATED_METRICS) == {*metrics.CORPUS_METRICS, "pass_rate", "score"}


# --- A/A and a worse candidate -------------------------------------------------------------

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "in", "mat", "park", "big"]
WORDS += ["small", "red", "blue", "house", "tree", "old", "new"]


def _dataset(seed: int, n: int = 60) -> tuple[list[Case], random.Random]:
    rng = random.Random(seed)
    cases = [
        Case(id=str(i), line=i + 1, input="q", references=(" ".join(rng.choices(WORDS, k=10)),))
        for i in range(n)
    ]
    return cases, rng


def _system(cases: list[Case], rng: random.Random, noise: float) -> list[str]:
    return [
        " ".join(w if rng.random() > noise else rng.choice(WORDS) for w in c.references[0].split())
        for c in cases
    ]


STRICT = EvalGateConfig.model_validate(
    {"metrics": {name: {"max_regression": 0.0} for name in metrics.CORPUS_METRICS}}
)
REALISTIC = EvalGateConfig.model_validate(
    {
        "metrics": {
            "bleu": {"min": 10, "max_regression": 5.0, "min_effect": 2.0},
            "chrf": {"max_regression": 0.05, "min_effect": 0.02},
            "rouge_l": {"min": 0.3, "max_regression": 0.05, "min_effect": 0.02},
            "exact_match": {"max_regression": 0.1, "min_effect": 0.05},
        }
    }
)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_release_against_itself_always_passes(seed: int) -> None:
    cases, rng = _dataset(seed)
    outputs = _system(cases, rng, 0.3)
    compared = compare_outputs(cases, outputs, list(outputs), seed=seed)
    candidate = metrics.corpus_scores(cases, outputs)
    decision = decide(STRICT, candidate, compared)
    assert decision.passed, decision.failures
    assert all(c.p_value == 1.0 and c.delta == 0 for c in compared.values())


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_two_samples_of_the_same_system_pass_a_realistic_gate(seed: int) -> None:
    cases, rng = _dataset(seed)
    baseline = _system(cases, rng, 0.3)
    candidate = _system(cases, rng, 0.3)  # same process, different draw
    compared = compare_outputs(cases, baseline, candidate, seed=seed)
    decision = decide(REALISTIC, metrics.corpus_scores(cases, candidate), compared)
    assert decision.passed, decision.failures


def test_a_ruined_candidate_fails_with_clear_reasons() -> None:
    cases, rng = _dataset(7)
    baseline = _system(cases, rng, 0.2)
    ruined = ["I am sorry, I cannot help with that." for _ in cases]
    compared = compare_outputs(cases, baseline, ruined)
    decision = decide(REALISTIC, metrics.corpus_scores(cases, ruined), compared)
    assert not decision.passed
    failed = {v.metric for v in decision.verdicts if not v.passed}
    assert {"bleu", "chrf", "rouge_l"} <= failed
    assert any(r.startswith("bleu: ") and "< minimum 10" in r for r in decision.failures)
    assert any(
        r.startswith("rouge_l regressed by ") and "> allowed 0.05" in r for r in decision.failures
    )


def test_the_documented_gate_config_is_valid() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "eval-metrics.md").read_text("utf-8")
    blocks = [
        b for b in re.findall(r"^```yaml\n(.*?)^```", doc, flags=re.M | re.S) if "gates:" in b
    ]
    assert blocks, "docs/eval-metrics.md has no gate example"
    for block in blocks:
        config = EvalGateConfig.model_validate(yaml.safe_load(block)["gates"]["eval"])
        assert config.metrics
    for key in ("alpha", "min", "max_regression", "min_effect"):
        assert f"\n| `{key}` |" in doc
