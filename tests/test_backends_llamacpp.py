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


@pytest.mark.slow
def test_closing_a_stream_stops_the_model_thread_at_once() -> None:
    """A consumer that goes away (a client disconnect) frees llama.cpp's thread within
    a token, instead of after the whole answer."""
    import asyncio
    import time

    from llmship.backends import create_backend
    from llmship.backends.base import GenerationRequest, Message
    from llmship.release.bundled import bundled_spec

    spec = bundled_spec()
    runtime = spec.runtime.model_copy(update={"n_threads": 1, "n_ctx": 512})
    spec = spec.model_copy(update={"runtime": runtime})
    request = GenerationRequest(
        max_tokens=480, messages=(Message("user", "Write a long story."),), temperature=0
    )

    async def scenario() -> tuple[int, float]:
        backend = create_backend(spec)
        await backend.start()
        try:
            stream = backend.stream(request)
            first = await stream.__anext__()
            await stream.aclose()
            started = time.perf_counter()
            executor = backend._executor  # type: ignore[attr-defined]
            await asyncio.get_running_loop().run_in_executor(executor, lambda: None)
            return first.tokens, time.perf_counter() - started
        finally:
            await backend.close()

    tokens, freed_after = asyncio.run(scenario())
    assert tokens >= 1
    assert freed_after < 2.0, f"the model thread kept generating for {freed_after:.1f}s"
