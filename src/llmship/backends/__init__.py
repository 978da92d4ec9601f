"""Model backends behind one small interface (``Backend``)."""

from __future__ import annotations

from llmship.backends.base import Backend, BackendInfo, Chunk, GenerationRequest, Message
from llmship.release.spec import ReleaseSpec
from llmship.release.weights import verify_weights

__all__ = ["Backend", "BackendInfo", "Chunk", "GenerationRequest", "Message", "create_backend"]


def create_backend(spec: ReleaseSpec) -> Backend:
    """The backend a release names; llamacpp weights are checked against their sha256 first."""
    if spec.backend == "openai":
        from llmship.backends.openai import OpenAIBackend

        return OpenAIBackend(spec)
    from llmship.backends.llamacpp import LlamaCppBackend

    weights = verify_weights(spec)
    assert weights is not None
    return LlamaCppBackend(spec, weights)
