"""Text similarity for comparing two answers (shadow traffic): ROUGE-L with CJK support."""

from __future__ import annotations

import re

# One token per CJK ideograph, kana or hangul syllable; words of letters/digits otherwise.
_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+",
    re.UNICODE,
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, with each CJK character its own token (as ROUGE for Chinese does)."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        if len(token) > 1 and _CJK.search(token):
            tokens.extend(token)
        else:
            tokens.append(token)
    return tokens


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (two-row dynamic programming)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 in [0, 1] between two texts; 1.0 when both are empty."""
    c, r = tokenize(candidate), tokenize(reference)
    if not c and not r:
        return 1.0
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)
