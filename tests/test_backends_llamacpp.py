"""Pure helpers of the llama.cpp backend (the backend itself: tests/test_serve_process.py)."""

from __future__ import annotations

import pytest

from llmship.backends.llamacpp import _find_stop, _stop_prefix_len


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("hello world", ["wor"], 6),
        ("hello", ["x"], None),
        ("a<|im_end|>b<|x", ["<|x", "<|im_end|>"], 1),
    ],
)
def test_find_stop(text: str, stops: list[str], expected: int | None) -> None:
    assert _find_stop(text, stops) == expected


@pytest.mark.parametrize(
    ("text", "stops", "held"),
    [
        ("hello <|im", ["<|im_end|>"], 4),
        ("hello <", ["<|im_end|>"], 1),
        ("hello", ["<|im_end|>"], 0),
        ("ab", ["b", "abc"], 2),
        ("xEN", ["END", "ENOUGH"], 2),
    ],
)
def test_stop_prefix_is_held_back(text: str, stops: list[str], held: int) -> None:
    assert _stop_prefix_len(text, stops) == held
