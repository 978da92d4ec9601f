"""ROUGE-L similarity, including Chinese."""

from __future__ import annotations

import pytest

from llmship.gateway.similarity import lcs_length, rouge_l, tokenize


def test_tokenize_splits_cjk_per_character() -> None:
    assert tokenize("量子计算 is Fun!") == ["量", "子", "计", "算", "is", "fun"]
    assert tokenize("GPT-4o, 2024") == ["gpt", "4o", "2024"]


@pytest.mark.parametrize(
    ("a", "b", "score"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("the cat is on the mat", "the cat sat on the mat", 5 / 6),
        ("完全不同", "毫无关系", 0.0),
        ("量子计算很强大", "量子计算非常强大", 2 * (6 / 7) * (6 / 8) / (6 / 7 + 6 / 8)),
        ("", "", 1.0),
        ("", "something", 0.0),
    ],
)
def test_rouge_l(a: str, b: str, score: float) -> None:
    assert rouge_l(a, b) == pytest.approx(score)
    assert rouge_l(b, a) == pytest.approx(score)


def test_lcs() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
