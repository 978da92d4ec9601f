"""The output cache of ``llmship eval``: generations stored in the registry.

An output is keyed by the sha256 of everything that decides it: the release's
content (its spec digest: weights sha256, prompt, parameters), the case's chat,
and the generation parameters of the run (temperature, seed, max tokens, ...).
A re-run with nothing changed finds every output and generates nothing; change
any of those and the affected cases are generated again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["CACHE_VERSION", "CachedOutput", "OutputCache", "output_key"]

CACHE_VERSION = 1
"""Part of every key: bumped when what a cached output means changes."""


class _Store(Protocol):
    """What the cache needs of the registry."""

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def cache_put_many(self, items: Iterable[tuple[str, str, dict[str, Any]]]) -> None: ...


@dataclass(frozen=True)
class CachedOutput:
    """One generation as it is cached: the text and how it was made."""

    text: str
    latency_s: float
    """Seconds from sending the request to its last token."""
    ttft_s: float | None = None
    """Seconds to the first generated text."""
    prompt_tokens: int | None = None
    """None when the backend did not report it."""
    completion_tokens: int = 0
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CachedOutput | None:
        """The output stored as ``data``; None when it is not one (an older format)."""
        try:
            return cls(
                text=str(data["text"]),
                latency_s=float(data["latency_s"]),
                ttft_s=float(data["ttft_s"]) if data.get("ttft_s") is not None else None,
                prompt_tokens=_optional_int(data.get("prompt_tokens")),
                completion_tokens=int(data.get("completion_tokens") or 0),
                finish_reason=data.get("finish_reason"),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def output_key(
    release_digest: str,
    messages: Sequence[Mapping[str, str]],
    params: Mapping[str, Any],
) -> str:
    """sha256 (hex) of what decides an output: release content, chat, generation params."""
    payload = {
        "v": CACHE_VERSION,
        "release": release_digest,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())},
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class OutputCache:
    """Outputs in the registry.

    ``read=False`` (``llmship eval --no-cache``) finds nothing, so every output is
    generated again; with ``write`` the fresh outputs replace the cached ones.
    """

    def __init__(self, store: _Store, *, read: bool = True, write: bool = True) -> None:
        self.store = store
        self.read = read
        self.write = write

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedOutput]:
        """The cached outputs among ``keys``."""
        if not self.read:
            return {}
        found: dict[str, CachedOutput] = {}
        for key, data in self.store.cache_get_many(sorted(set(keys))).items():
            output = CachedOutput.from_dict(data)
            if output is not None:
                found[key] = output
        return found

    def put_many(self, items: Iterable[tuple[str, str, CachedOutput]]) -> None:
        """Store ``(key, ref, output)`` items (nothing happens without ``write``)."""
        if not self.write:
            return
        rows = [(key, ref, output.to_dict()) for key, ref, output in items]
        if rows:
            self.store.cache_put_many(rows)
