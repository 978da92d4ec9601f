"""The scoring functions of reference-based metrics: BLEU and chrF (sacrebleu), ROUGE
(rouge-score), exact match, accuracy. Which metrics a run reports, compares and gates on,
and how, is the table in :mod:`llmship.eval.metric_table`; :mod:`llmship.eval.metrics`
re-exports every name here.

Scales, everywhere in llmship (datasets, results, gates):

============  =========  ====================================================
metric        scale      implementation
============  =========  ====================================================
``bleu``      0..100     sacrebleu BLEU (its own scale); tokenizer ``zh`` when
                         the references contain Chinese characters, else ``13a``
``chrf``      0..1       sacrebleu chrF (char order 6, beta 2) divided by 100
``rouge_1``   0..1       rouge-score ROUGE-1 F1, Porter stemmer, CJK-aware tokens
``rouge_2``   0..1       the same for bigrams
``rouge_l``   0..1       the same for the longest common subsequence
``exact_match`` 0..1     1 when the output equals a reference after collapsing
                         whitespace and ignoring case
``accuracy``  0..1       share of outputs equal to their label (surrounding
                         whitespace ignored)
============  =========  ====================================================

With several references a sentence score takes the best one (sacrebleu's and
rouge-score's multi-reference rule). Corpus BLEU and chrF come from summed
sufficient statistics (sacrebleu's ``corpus_score``); corpus ROUGE, exact match
and accuracy are means over cases. Every sacrebleu score carries its signature.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

__all__ = [
    "CjkRougeTokenizer",
    "CorpusScore",
    "accuracy",
    "bleu_metric",
    "bleu_tokenizer",
    "chrf_metric",
    "corpus_bleu",
    "corpus_chrf",
    "exact_match",
    "has_cjk",
    "label_hit",
    "normalize_text",
    "rouge",
    "rouge_1",
    "rouge_2",
    "rouge_l",
    "sentence_bleu",
    "sentence_chrf",
]

# Han ideographs (what sacrebleu's ``zh`` tokenizer splits), for choosing the BLEU tokenizer.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_CJK_CHAR = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002ffff]"
)
_ROUGE_TYPES = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_l": "rougeL"}


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains a Chinese (Han) character."""
    return _HAN.search(text) is not None


def bleu_tokenizer(references: Iterable[str]) -> str:
    """The sacrebleu tokenizer for these references: ``zh`` if any has Chinese, else ``13a``."""
    return "zh" if any(has_cjk(r) for r in references) else "13a"


@dataclass(frozen=True)
class CorpusScore:
    """A corpus-level score with what it takes to reproduce it."""

    name: str
    score: float
    """On the metric's scale (BLEU 0..100, the others 0..1)."""
    n: int
    """The number of cases scored."""
    signature: str | None = None
    """sacrebleu's signature (``nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.6.0``)."""


# --- BLEU and chrF -----------------------------------------------------------------------


def bleu_metric(tokenize: str, *, effective_order: bool = False) -> BLEU:
    """sacrebleu's BLEU with its defaults and the given tokenizer."""
    return BLEU(tokenize=tokenize, effective_order=effective_order)


def chrf_metric() -> CHRF:
    """sacrebleu's chrF with its defaults (character 6-grams, beta 2, no word n-grams)."""
    return CHRF()


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Case-major references (one list per hypothesis) as sacrebleu's reference streams,
    padded with None where a case has fewer references than another."""
    width = max((len(r) for r in references), default=0)
    if width == 0:
        raise ValueError("every hypothesis needs at least one reference")
    for index, refs in enumerate(references):
        if not refs:
            raise ValueError(f"hypothesis #{index} has no reference")
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, tokenize: str | None = None
) -> CorpusScore:
    """Corpus BLEU on sacrebleu's 0..100 scale.

    ``references[i]`` are the references of ``hypotheses[i]`` (any number, at least one).
    ``tokenize`` defaults to :func:`bleu_tokenizer` over all references.
    """
    _check_lengths(hypotheses, references)
    tok = tokenize or bleu_tokenizer(r for refs in references for r in refs)
    metric = bleu_metric(tok)
    score = metric.corpus_score(list(hypotheses), reference_streams(references))  # type: ignore[arg-type]
    return CorpusScore(
        name="bleu",
        score=float(score.score),
        n=len(hypotheses),
        signature=str(metric.get_signature().format()),
    )


def sentence_bleu(
    hypothesis: str, references: Sequence[str], *, tokenize: str | None = None
) -> float:
    """Sentence BLEU on the 0..100 scale, with effective order (as ``sacrebleu.sentence_bleu``)."""
    tok = tokenize or bleu_tokenizer(references)
    metric = bleu_metric(tok, effective_order=True)
    return float(metric.sentence_score(hypothesis, list(references)).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> CorpusScore:
    """Corpus chrF on the 0..1 scale (sacrebleu's score / 100)."""
    _check_lengths(hypotheses, references)
    metric = chrf_metric()
    score = metric.corpus_score(list(hypotheses), reference_streams(references))  # type: ignore[arg-type]
    return CorpusScore(
        name="chrf",
        score=float(score.score) / 100.0,
        n=len(hypotheses),
        signature=str(metric.get_signature().format()),
    )


def sentence_chrf(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence chrF on the 0..1 scale."""
    return float(chrf_metric().sentence_score(hypothesis, list(references)).score) / 100.0


# --- ROUGE -------------------------------------------------------------------------------


class CjkRougeTokenizer:
    """rouge-score's default tokenization, plus one token per CJK character.

    Text between CJK characters goes through rouge-score's own ``DefaultTokenizer``
    (lower-cased ``[a-z0-9]+`` runs, Porter-stemmed when longer than 3 letters),
    so Latin text gives exactly its tokens; each CJK ideograph, kana or hangul
    syllable is a token of its own, where the default tokenizer would drop it
    (and Chinese would always score 0).
    """

    def __init__(self, use_stemmer: bool = True):
        self._default = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        position = 0
        for match in _CJK_CHAR.finditer(text):
            tokens.extend(self._default.tokenize(text[position : match.start()]))
            tokens.append(match.group())
            position = match.end()
        tokens.extend(self._default.tokenize(text[position:]))
        return tokens


@functools.lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(
        list(_ROUGE_TYPES.values()), use_stemmer=True, tokenizer=CjkRougeTokenizer(True)
    )


def rouge(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (0..1), each the best over the references.

    Keys ``rouge_1``, ``rouge_2``, ``rouge_l``.
    """
    if not references:
        raise ValueError("ROUGE needs at least one reference")
    return dict(zip(_ROUGE_TYPES, _rouge(prediction, tuple(references)), strict=True))


@functools.lru_cache(maxsize=4096)
def _rouge(prediction: str, references: tuple[str, ...]) -> tuple[float, ...]:
    """The three F1 scores, remembered: each ROUGE metric of the table asks for its own."""
    scores: Mapping[str, Any] = _scorer().score_multi(list(references), prediction)
    return tuple(float(scores[kind].fmeasure) for kind in _ROUGE_TYPES.values())


def rouge_1(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-1 F1 in 0..1 (best reference)."""
    return rouge(prediction, references)["rouge_1"]


def rouge_2(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-2 F1 in 0..1 (best reference)."""
    return rouge(prediction, references)["rouge_2"]


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F1 in 0..1 (best reference)."""
    return rouge(prediction, references)["rouge_l"]


# --- exact match and accuracy ---------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Whitespace collapsed to single spaces, stripped, case-folded."""
    return " ".join(text.split()).casefold()


def exact_match(prediction: str, references: Sequence[str], *, normalize: bool = True) -> float:
    """1.0 when ``prediction`` equals a reference, else 0.0.

    With ``normalize`` (the default) whitespace runs count as one space, ends are
    stripped and case is ignored; without it the strings must be identical.
    """
    if normalize:
        target = normalize_text(prediction)
        return 1.0 if any(normalize_text(r) == target for r in references) else 0.0
    return 1.0 if prediction in references else 0.0


def label_hit(prediction: str, references: Sequence[str]) -> float:
    """1.0 when ``prediction`` equals a reference once surrounding whitespace is stripped
    (one case of :func:`accuracy`), else 0.0."""
    return 1.0 if any(prediction.strip() == r.strip() for r in references) else 0.0


def accuracy(
    predictions: Sequence[str], labels: Sequence[str], *, normalize: bool = False
) -> float:
    """Share (0..1) of predictions equal to their label.

    Surrounding whitespace is ignored; with ``normalize`` case and inner
    whitespace are too. An empty input gives 0.0.
    """
    _check_lengths(predictions, labels)
    if not predictions:
        return 0.0
    if normalize:
        hits = sum(
            normalize_text(p) == normalize_text(lbl)
            for p, lbl in zip(predictions, labels, strict=True)
        )
    else:
        hits = sum(p.strip() == lbl.strip() for p, lbl in zip(predictions, labels, strict=True))
    return hits / len(predictions)


def _check_lengths(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} outputs but {len(b)} reference sets")
