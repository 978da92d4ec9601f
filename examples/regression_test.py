"""Regression tests of a release with llmship's pytest plugin (the seed's test section).

    pytest examples/regression_test.py -v
    pytest examples/regression_test.py -v --llmship-release chat@1.1.0

The `generate` fixture serves the release in-process (the real model) at temperature
0: the production alias of the registry, or the bundled SmolLM2 release. These
assertions hold for SmolLM2-135M-Instruct; see docs/regression-tests.md.
"""

from __future__ import annotations

from collections.abc import Callable

Generate = Callable[..., str]


def test_regression(generate: Generate) -> None:
    output = generate("你好")
    assert output.strip()


def test_knows_the_capital_of_france(generate: Generate) -> None:
    output = generate("What is the capital of France?", max_new_tokens=20)
    assert "Paris" in output


def test_greets_in_french(generate: Generate) -> None:
    output = generate("Translate 'good morning' into French.", max_new_tokens=20)
    assert "bonjour" in output.lower()


def test_temperature_zero_is_deterministic(generate: Generate) -> None:
    prompt = "What is the capital of France?"
    assert generate(prompt, max_new_tokens=20) == generate(prompt, max_new_tokens=20)
