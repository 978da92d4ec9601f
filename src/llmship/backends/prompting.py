"""How a release turns a user's chat into what its backend generates from.

A release's ``prompt.template`` wraps the last user message, its ``prompt.system``
is added when the chat has no system message of its own, and ``developer``
messages are sent as ``system``. Its ``params`` are the default generation
parameters; a request's own values take precedence. The model server applies
exactly these rules to every request; ``llmship eval`` applies them to every case.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmship.backends.base import GenerationRequest, Message
from llmship.errors import InvalidRequestError
from llmship.release.spec import ReleaseSpec

__all__ = ["build_messages", "generation_request", "sampling_params"]


def build_messages(spec: ReleaseSpec, chat: Iterable[tuple[str, str]]) -> tuple[Message, ...]:
    """``chat`` (``(role, text)`` pairs) as the messages ``spec`` sends to its backend.

    InvalidRequestError when the chat has no text at all.
    """
    prompt = spec.prompt
    messages = [Message(role, text) for role, text in chat]
    if not any(m.content.strip() for m in messages):
        raise InvalidRequestError(
            "messages: the conversation has no text; send at least one non-empty message",
            param="messages",
        )
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is not None and prompt.template:
        m = messages[last_user]
        messages[last_user] = Message(m.role, prompt.apply(m.content))
    if prompt.system and not any(m.role in ("system", "developer") for m in messages):
        messages.insert(0, Message("system", prompt.system))
    return tuple(
        Message("system" if m.role == "developer" else m.role, m.content) for m in messages
    )


def sampling_params(spec: ReleaseSpec, **overrides: Any) -> dict[str, Any]:
    """The generation parameters of ``spec`` with ``overrides`` (None: keep the release's).

    The keys are the fields of ``GenerationRequest`` besides the prompt:
    ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``,
    ``repeat_penalty``, ``presence_penalty``, ``frequency_penalty``. A ``stop``
    override is added to the release's stop sequences.
    """
    params = spec.params
    unknown = sorted(set(overrides) - _SAMPLING_FIELDS)
    if unknown:
        raise TypeError(f"unknown generation parameters: {', '.join(unknown)}")
    values: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "seed": params.seed,
        "stop": tuple(params.stop),
        "repeat_penalty": params.repeat_penalty,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    for name, value in overrides.items():
        if value is None:
            continue
        values[name] = values["stop"] + tuple(value) if name == "stop" else value
    return values


def generation_request(
    spec: ReleaseSpec, chat: Iterable[tuple[str, str]], **overrides: Any
) -> GenerationRequest:
    """The chat request ``spec`` makes of ``chat`` with its parameters and ``overrides``."""
    return GenerationRequest(
        messages=build_messages(spec, chat), **sampling_params(spec, **overrides)
    )


_SAMPLING_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)
