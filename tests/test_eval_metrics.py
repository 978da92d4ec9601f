"""Metrics equal sacrebleu's and rouge-score's own; every assertion type, table-driven."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from llmship.errors import InvalidRequestError, NotConfiguredError
from llmship.eval import metrics, scoring
from llmship.eval.assertions import (
    ASSERTION_TYPES,
    canonical_type,
    evaluate_case,
    parse_judge_answer,
    preflight,
    rubric_prompt,
    semantic_available,
)
from llmship.eval.dataset import Case, Dataset, parse_cases

EN_HYPS = [
    "The cat sat on the mat.",
    "Quantum computers use qubits to compute.",
    "Running quickly, the dogs jumped over fences.",
    "It is raining today in London.",
]
EN_REFS = [
    ["The cat is sitting on the mat."],
    ["A quantum computer computes with qubits.", "Quantum computing relies on qubits."],
    ["The dog runs and jumps over the fence."],
    ["Today it rains in London."],
]
ZH_HYPS = ["量子计算利用量子比特进行计算。", "今天北京天气很好。", "机器学习是人工智能的一个分支。"]
ZH_REFS = [
    ["量子计算是利用量子力学原理进行计算的技术。"],
    ["北京今天的天气非常好。", "今天北京是晴天。"],
    ["机器学习属于人工智能领域。"],
]


def _streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    return metrics.reference_streams(refs)


# --- sacrebleu -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyps", "refs", "tok"), [(EN_HYPS, EN_REFS, "13a"), (ZH_HYPS, ZH_REFS, "zh")], ids=["en", "zh"]
)
def test_bleu_and_chrf_equal_sacrebleus(hyps: list[str], refs: list[list[str]], tok: str) -> None:
    ours = metrics.corpus_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, _streams(refs), tokenize=tok)  # type: ignore[arg-type]
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert ours.score > 0
    assert f"tok:{tok}" in (ours.signature or "")
    assert ours.signature is not None and ours.signature.startswith("nrefs:var|")

    chrf = metrics.corpus_chrf(hyps, refs)
    assert chrf.score == pytest.approx(sacrebleu.corpus_chrf(hyps, _streams(refs)).score / 100)  # type: ignore[arg-type]
    assert "nc:6" in (chrf.signature or "")

    for hyp, ref in zip(hyps, refs, strict=True):
        expected = sacrebleu.sentence_bleu(hyp, ref, tokenize=tok).score
        assert metrics.sentence_bleu(hyp, ref) == pytest.approx(expected, abs=1e-9)
        expected_chrf = sacrebleu.sentence_chrf(hyp, ref).score / 100
        assert metrics.sentence_chrf(hyp, ref) == pytest.approx(expected_chrf, abs=1e-12)


def test_chinese_bleu_needs_the_zh_tokenizer() -> None:
    # With 13a a Chinese sentence is one token: BLEU is 0 for all but identical strings.
    assert sacrebleu.corpus_bleu(ZH_HYPS, _streams(ZH_REFS), tokenize="13a").score < 1  # type: ignore[arg-type]
    assert metrics.corpus_bleu(ZH_HYPS, ZH_REFS).score > 10


@pytest.mark.parametrize(
    ("refs", "tok"),
    [
        (["hello world"], "13a"),
        (["你好，世界"], "zh"),
        (["hello", "mixed 中文 text"], "zh"),
        (["こんにちは"], "13a"),
    ],
)
def test_bleu_tokenizer_choice(refs: list[str], tok: str) -> None:
    assert metrics.bleu_tokenizer(refs) == tok


def test_single_reference_signature_and_explicit_tokenizer() -> None:
    score = metrics.corpus_bleu(["a b c d"], [["a b c d"]], tokenize="char")
    assert score.score == pytest.approx(100.0)
    assert score.signature is not None
    assert score.signature.startswith("nrefs:1|") and "tok:char" in score.signature


def test_reference_streams_pad_and_reject() -> None:
    assert metrics.reference_streams([["a"], ["b", "c"]]) == [["a", "b"], [None, "c"]]
    with pytest.raises(ValueError, match="no reference"):
        metrics.reference_streams([["a"], []])
    with pytest.raises(ValueError, match="3 outputs but 2"):
        metrics.corpus_bleu(["a", "b", "c"], [["a"], ["b"]])


# --- rouge-score ---------------------------------------------------------------------------


def test_rouge_equals_rouge_scores_default_on_english() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    tokenizer = metrics.CjkRougeTokenizer()
    for hyp, refs in zip(EN_HYPS, EN_REFS, strict=True):
        theirs = scorer.score_multi(refs, hyp)
        ours = metrics.rouge(hyp, refs)
        assert ours["rouge_1"] == pytest.approx(theirs["rouge1"].fmeasure)
        assert ours["rouge_2"] == pytest.approx(theirs["rouge2"].fmeasure)
        assert ours["rouge_l"] == pytest.approx(theirs["rougeL"].fmeasure)
        for text in [hyp, *refs]:
            assert tokenizer.tokenize(text) == scorer._tokenizer.tokenize(text)
    # The stemmer is on: "running"/"runs" meet at "run".
    assert tokenizer.tokenize("Running runs") == ["run", "run"]


def _as_ascii(text: str) -> str:
    """Each CJK character spelled as an ASCII word, for rouge-score's default tokenizer."""
    return " ".join(f"u{ord(ch)}" if scoring._CJK_CHAR.match(ch) else ch for ch in text)


def test_rouge_on_chinese_equals_rouge_score_with_one_token_per_character() -> None:
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for hyp, refs in zip(ZH_HYPS, ZH_REFS, strict=True):
        theirs = default.score_multi([_as_ascii(r) for r in refs], _as_ascii(hyp))
        ours = metrics.rouge(hyp, refs)
        assert ours["rouge_1"] == pytest.approx(theirs["rouge1"].fmeasure)
        assert ours["rouge_2"] == pytest.approx(theirs["rouge2"].fmeasure)
        assert ours["rouge_l"] == pytest.approx(theirs["rougeL"].fmeasure)
        assert ours["rouge_l"] > 0
        # rouge-score alone drops every Chinese character and scores 0.
        assert default.score_multi(refs, hyp)["rougeL"].fmeasure == 0


def test_rouge_by_hand_on_chinese_and_mixed_text() -> None:
    # hyp 量子计算 (4 tokens), ref 量子力学 (4 tokens): common 量子 -> P = R = 2/4.
    assert metrics.rouge_1("量子计算", ["量子力学"]) == pytest.approx(0.5)
    assert metrics.rouge_2("量子计算", ["量子力学"]) == pytest.approx(1 / 3)
    assert metrics.rouge_l("量子计算", ["量子力学"]) == pytest.approx(0.5)
    assert metrics.CjkRougeTokenizer().tokenize("GPUs加速AI计算！") == [
        "gpu",
        "加",
        "速",
        "ai",
        "计",
        "算",
    ]
    with pytest.raises(ValueError, match="reference"):
        metrics.rouge("x", [])


# --- exact match and accuracy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "references", "normalize", "expected"),
    [
        ("Paris", ["Paris"], True, 1.0),
        ("  paris \n", ["Paris"], True, 1.0),
        ("New   York", ["new york"], True, 1.0),
        ("Paris.", ["Paris"], True, 0.0),
        ("paris", ["Paris"], False, 0.0),
        ("Paris", ["London", "Paris"], False, 1.0),
    ],
)
def test_exact_match(
    prediction: str, references: list[str], normalize: bool, expected: float
) -> None:
    assert metrics.exact_match(prediction, references, normalize=normalize) == expected


def test_accuracy_over_labels() -> None:
    predictions = ["positive", " negative\n", "Neutral", "positive"]
    labels = ["positive", "negative", "neutral", "negative"]
    assert metrics.accuracy(predictions, labels) == 0.5
    assert metrics.accuracy(predictions, labels, normalize=True) == 0.75
    assert metrics.accuracy([], []) == 0.0


def test_corpus_scores_and_case_scores() -> None:
    cases = [
        Case(id="1", line=1, input="q", references=("Paris",)),
        Case(id="2", line=2, input="q", references=("Berlin",)),
        Case(id="3", line=3, input="q"),
    ]
    outputs = ["Paris", "berlin", "anything"]
    scores = metrics.corpus_scores(cases, outputs)
    assert set(scores) == set(metrics.CORPUS_METRICS)
    assert scores["exact_match"].score == 1.0
    assert scores["accuracy"].score == 0.5
    assert scores["bleu"].n == 2
    assert scores["bleu"].score == pytest.approx(
        sacrebleu.corpus_bleu(["Paris", "berlin"], [["Paris", "Berlin"]]).score
    )
    assert metrics.case_scores(cases[0], "Paris")["rouge_l"] == 1.0
    assert metrics.case_scores(cases[2], "x") == {}
    assert metrics.corpus_scores(cases[2:], ["x"]) == {}


# --- assertions ----------------------------------------------------------------------------


def _case(asserts: list[dict[str, Any]], **fields: Any) -> Case:
    row = {"input": "Explain quantum computing", "assert": asserts, **fields}
    (case,) = parse_cases(json.dumps(row), "jsonl")
    return case


SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

ASSERTIONS: list[tuple[dict[str, Any], str, bool]] = [
    ({"type": "contains", "value": "量子"}, "量子计算", True),
    ({"type": "contains", "value": "量子"}, "quantum", False),
    ({"type": "icontains", "value": "QUBIT"}, "uses qubits", True),
    ({"type": "not-contains", "value": "sorry"}, "Sure.", True),
    ({"type": "not_contains", "value": "sorry"}, "I'm sorry", False),
    ({"type": "not-icontains", "value": "SORRY"}, "i am sorry", False),
    ({"type": "regex", "value": r"^\d{4}-\d{2}$"}, "2024-05", True),
    ({"type": "regex", "value": r"^\d{4}$"}, "year 2024", False),
    ({"type": "is-json"}, '{"a": [1, 2]}', True),
    ({"type": "is-json"}, "{'a': 1}", False),
    ({"type": "is-json", "value": SCHEMA}, '{"name": 3}', False),
    ({"type": "json-schema", "value": SCHEMA}, '{"name": "x"}', True),
    ({"type": "json-schema", "value": SCHEMA}, '{"nom": "x"}', False),
    ({"type": "json-schema", "value": SCHEMA}, "not json", False),
    ({"type": "length", "value": {"min": 2, "max": 5}}, "abc", True),
    ({"type": "length", "value": {"min": 4}}, "abc", False),
    ({"type": "length", "value": 2}, "abc", False),
    ({"type": "equals", "value": "Paris"}, "Paris", True),
    ({"type": "equals", "value": "Paris"}, "paris", False),
    ({"type": "exact_match", "value": "Paris"}, " paris ", True),
    ({"type": "exact_match", "value": ["Rome", "Paris"]}, "PARIS", True),
    ({"type": "rouge_l", "value": "the cat sat", "threshold": 0.5}, "the cat sat down", True),
    ({"type": "rouge_1", "value": "the cat sat", "threshold": 0.9}, "the cat sat down", False),
    ({"type": "rouge_2", "value": "量子计算很有用", "threshold": 0.3}, "量子计算有用", True),
    (
        {"type": "bleu", "value": "the cat sat on the mat", "threshold": 50},
        "the cat sat on the mat",
        True,
    ),
    ({"type": "bleu", "value": "the cat sat on the mat", "threshold": 50}, "a dog", False),
    ({"type": "chrf", "value": "quantum computing", "threshold": 0.5}, "quantum computers", True),
]


@pytest.mark.parametrize(("spec", "output", "passed"), ASSERTIONS)
def test_assertion_types(spec: dict[str, Any], output: str, passed: bool) -> None:
    result = evaluate_case(_case([spec]), output)
    (one,) = result.assertions
    assert one.passed is passed, one.reason
    assert result.passed is passed
    assert 0.0 <= one.score <= 1.0
    assert one.reason


def test_every_registered_type_has_a_table_row_or_its_own_test() -> None:
    tabled = {canonical_type(str(spec["type"])) for spec, _, _ in ASSERTIONS}
    own_tests = {"latency", "similar", "llm_rubric"}
    assert tabled | own_tests == set(ASSERTION_TYPES)


def test_metric_assertions_use_the_case_references_and_report_values() -> None:
    case = _case(
        [{"type": "rouge_l", "threshold": 0.2}, {"type": "bleu"}],
        reference="量子计算是利用量子力学的计算",
    )
    result = evaluate_case(case, "量子计算利用量子力学")
    rouge_result, bleu_result = result.assertions
    assert rouge_result.passed
    assert rouge_result.value == pytest.approx(
        metrics.rouge_l("量子计算利用量子力学", case.references)
    )
    assert rouge_result.reason.startswith("ROUGE-L 0.")
    assert bleu_result.threshold == 20.0  # the default, in BLEU points
    assert bleu_result.score == pytest.approx((bleu_result.value or 0) / 100)


@pytest.mark.parametrize(
    ("latency", "passed", "reason"),
    [
        (0.2, True, "latency 0.200s <= 0.5s"),
        (0.9, False, "latency 0.900s > 0.5s"),
        (None, False, "latency was not measured"),
    ],
)
def test_latency(latency: float | None, passed: bool, reason: str) -> None:
    result = evaluate_case(_case([{"type": "latency", "threshold": 0.5}]), "x", latency)
    assert result.passed is passed
    assert result.assertions[0].reason == reason


def test_case_pass_rule_all_or_weighted_threshold() -> None:
    asserts: list[dict[str, Any]] = [
        {"type": "contains", "value": "a", "weight": 3},
        {"type": "contains", "value": "b"},
        {"type": "contains", "value": "c", "weight": 0},
    ]
    # Without a threshold every weighted assertion must pass; weight 0 only informs.
    result = evaluate_case(_case(asserts), "a b")
    assert result.passed and result.score == 1.0
    result = evaluate_case(_case(asserts), "a")
    assert not result.passed
    assert result.score == pytest.approx(0.75)
    assert [a.type for a in result.failures] == ["contains", "contains"]
    # With a threshold the weighted mean decides.
    assert evaluate_case(_case(asserts, threshold=0.7), "a").passed
    assert not evaluate_case(_case(asserts, threshold=0.8), "a").passed
    # No assertions: nothing to fail, and left out of pass rates.
    empty = evaluate_case(_case([]), "x")
    assert empty.passed and not empty.has_assertions


# --- LLM as judge --------------------------------------------------------------------------

JUDGE_ANSWERS = [
    ('{"reason": "clear", "score": 0.9, "pass": true}', True, 0.9),
    ('Sure! ```json\n{"pass": false, "score": 0.2, "reason": "off topic"}\n```', False, 0.2),
    ('{"verdict": "PASS"}', True, None),
    ("Score: 7/10. The answer is mostly right.", None, 0.7),
    ("I'd give it 8 out of 10", None, 0.8),
    ("score = 85", None, 0.85),
    ("PASS - it explains qubits", True, None),
    ("The answer fails the rubric.", False, None),
    ("FAIL\nscore: 2", False, 0.2),
    ("Yes.", True, None),
    ("hmm", None, None),
]


@pytest.mark.parametrize(("answer", "passed", "score"), JUDGE_ANSWERS)
def test_parse_judge_answer(answer: str, passed: bool | None, score: float | None) -> None:
    verdict = parse_judge_answer(answer)
    assert verdict.passed is passed
    if score is None:
        assert verdict.score is None
    else:
        assert verdict.score == pytest.approx(score)


def test_llm_rubric_asks_the_judge_and_reads_its_verdict() -> None:
    prompts: list[str] = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return '{"reason": "mentions qubits", "score": 0.8, "pass": true}'

    case = _case([{"type": "llm-rubric", "value": "Mentions qubits"}], reference="Uses qubits.")
    result = evaluate_case(case, "It uses qubits.", judge=judge)
    (one,) = result.assertions
    assert one.passed and one.score == pytest.approx(0.8)
    assert one.reason == "judge: PASS (score 0.80): mentions qubits"
    assert prompts == [
        rubric_prompt("Mentions qubits", case.input or "", "It uses qubits.", ["Uses qubits."])
    ]
    assert "Mentions qubits" in prompts[0] and "It uses qubits." in prompts[0]

    # A written threshold also holds the judge's score to it.
    strict = _case([{"type": "llm-rubric", "value": "x", "threshold": 0.9}])
    assert not evaluate_case(strict, "y", judge=judge).passed
    # A bare score is compared with the default threshold 0.5.
    assert evaluate_case(
        _case([{"type": "llm_rubric", "value": "x"}]), "y", judge=lambda p: "6/10"
    ).passed
    vague = evaluate_case(_case([{"type": "llm_rubric", "value": "x"}]), "y", judge=lambda p: "hmm")
    assert not vague.passed
    assert vague.assertions[0].reason == "the judge gave no verdict or score: 'hmm'"


def test_llm_rubric_without_a_judge_is_a_clear_error() -> None:
    case = _case([{"type": "llm-rubric", "value": "polite"}])
    with pytest.raises(InvalidRequestError, match="needs a judge"):
        evaluate_case(case, "hi")
    dataset = Dataset(path="g.jsonl", cases=(case,), digest="0")
    with pytest.raises(InvalidRequestError, match=r"g\.jsonl: llm-rubric assertions need a judge"):
        preflight(dataset, judge=None)
    preflight(dataset, judge=lambda prompt: "PASS")


# --- semantic similarity -------------------------------------------------------------------


def _fake_embedder(texts: Sequence[str]) -> list[list[float]]:
    table = {"cat": [1.0, 0.0], "kitten": [0.9, 0.1], "car": [0.0, 1.0]}
    return [table[t] for t in texts]


@pytest.mark.parametrize(("output", "passed"), [("kitten", True), ("car", False)])
def test_similar_with_an_injected_embedder(output: str, passed: bool) -> None:
    case = _case([{"type": "similar", "value": "cat", "threshold": 0.9}])
    result = evaluate_case(case, output, embedder=_fake_embedder)
    assert result.passed is passed
    assert result.assertions[0].reason.startswith("cosine similarity ")


@pytest.mark.skipif(
    not semantic_available(),
    reason="the optional 'semantic' extra is not installed (pip install 'llmship[semantic]')",
)
def test_similar_with_the_bundled_minilm_model() -> None:
    case = _case(
        [{"type": "similar", "threshold": 0.6}],
        reference="Quantum computers use qubits to perform calculations.",
    )
    close = evaluate_case(case, "A quantum computer performs computations with qubits.")
    far = evaluate_case(case, "My favourite food is spaghetti with tomato sauce.")
    assert close.passed, close.assertions[0].reason
    assert not far.passed, far.assertions[0].reason
    assert (close.assertions[0].value or 0) > (far.assertions[0].value or 0) + 0.3


def test_similar_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmship.eval import assertions

    monkeypatch.setattr(assertions, "semantic_available", lambda: False)
    assertions._load_bundled_embedder.cache_clear()
    case = _case([{"type": "similar", "value": "x"}])
    try:
        with pytest.raises(NotConfiguredError, match=r"llmship\[semantic\]"):
            evaluate_case(case, "y")
        with pytest.raises(NotConfiguredError, match="semantic extra"):
            preflight(Dataset(path="d", cases=(case,), digest="0"), judge=None)
    finally:
        assertions._load_bundled_embedder.cache_clear()


def test_every_assertion_type_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "eval-metrics.md").read_text("utf-8")
    for name in ASSERTION_TYPES:
        assert f"\n| `{name}` |" in doc, f"docs/eval-metrics.md: no row for `{name}`"
