"""What one request measured, and how a streamed answer is read into it.

Definitions (as vLLM's ``bench serve`` implements them; see docs/loadtest.md):

- **TTFT**: from sending the request to the first *non-empty* content delta
  (``delta.content``, or ``delta.reasoning_content``/``reasoning`` for reasoning
  models, or ``text`` for completions) — not to the response headers. Streamed
  answers only: ``/predict`` answers all at once, and its E2E is not a TTFT.
- **ITL**: the gaps between consecutive content chunks.
- **TPOT**: ``(e2e - ttft) / (output_tokens - 1)``, for answers of two tokens or more.
- **E2E**: from sending to the last byte of the response.
- **Output tokens**: ``usage.completion_tokens`` when the server sends it, else the
  number of content chunks (words of the answer for a ``/predict`` reply without usage).

Pure code: no I/O, no gevent; the load generator feeds it lines and times.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from llmship.analysis.stats import time_per_output_token


@dataclass(frozen=True)
class RequestRecord:
    """One request of a load test. Times are seconds; ``start`` counts from the
    beginning of the run (warm-up included)."""

    start: float
    e2e: float
    ttft: float | None
    output_tokens: int
    itl: tuple[float, ...] = ()
    error: str | None = None
    status: int | None = None
    version: str | None = None
    """The ``X-Llmship-Version`` response header: which release answered."""
    streamed: bool = True
    """False for ``/predict``: the whole answer comes at once (no TTFT, no TPOT; reports
    written before TTFT was left out for them hold its E2E as ``ttft``)."""

    @property
    def first_token(self) -> float | None:
        """The TTFT of a streamed answer; None when not streamed or no token came."""
        return self.ttft if self.streamed else None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def end(self) -> float:
        return self.start + self.e2e

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (vLLM's definition)."""
        return time_per_output_token(self.e2e, self.first_token, self.output_tokens)

    @property
    def mean_itl(self) -> float | None:
        return sum(self.itl) / len(self.itl) if self.itl else None

    def to_json(self) -> list[Any]:
        """A compact row (records can be many)."""
        return [
            round(self.start, 6),
            round(self.e2e, 6),
            None if self.ttft is None else round(self.ttft, 6),
            self.output_tokens,
            [round(gap, 6) for gap in self.itl],
            self.error,
            self.status,
            self.version,
            self.streamed,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> RequestRecord:
        start, e2e, ttft, tokens, itl, error, status, version, streamed = row
        return cls(
            start=float(start),
            e2e=float(e2e),
            ttft=None if ttft is None else float(ttft),
            output_tokens=int(tokens),
            itl=tuple(float(g) for g in itl),
            error=error,
            status=status,
            version=version,
            streamed=bool(streamed),
        )


@dataclass
class StreamParser:
    """Reads an OpenAI-style server-sent-event stream line by line.

    ``feed(line, at)`` takes each line with the seconds since the request was sent;
    afterwards ``first_at``, ``chunk_times``, ``usage_tokens``, ``error`` and
    ``done`` describe the answer.
    """

    chat: bool = True
    chunk_times: list[float] = field(default_factory=list)
    usage_tokens: int | None = None
    error: str | None = None
    done: bool = False
    finish_reason: str | None = None
    _event: str | None = None

    @property
    def first_at(self) -> float | None:
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def output_tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else len(self.chunk_times)

    @property
    def gaps(self) -> tuple[float, ...]:
        times = self.chunk_times
        return tuple(b - a for a, b in itertools.pairwise(times))

    def feed(self, line: bytes | str, at: float) -> None:
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if not text:
            self._event = None
            return
        if text.startswith(":"):
            return  # a comment (keep-alive)
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value.strip()
        elif name == "data":
            self._data(value, at)

    def _data(self, value: str, at: float) -> None:
        if value.strip() == "[DONE]":
            self.done = True
            return
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            self.error = self.error or f"stream: not JSON: {value[:80]!r}"
            return
        if not isinstance(data, dict):
            return
        if data.get("error") or self._event == "error":
            self.error = self.error or f"stream error: {_error_message(data)}"
            return
        usage = data.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if _content(choice, chat=self.chat):
                self.chunk_times.append(at)
                break
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])


def _content(choice: dict[str, Any], *, chat: bool) -> bool:
    """Whether a streamed choice carries text (content or reasoning)."""
    if not chat:
        return bool(choice.get("text"))
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    return any(
        isinstance(delta.get(key), str) and delta[key]
        for key in ("content", "reasoning_content", "reasoning")
    )


def _error_message(data: dict[str, Any]) -> str:
    error = data.get("error", data)
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)[:200]
    return str(error)[:200]


def error_from_body(status: int, body: bytes) -> str:
    """``HTTP 429: queue full`` from an error response's status and (OpenAI-style) body."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        detail = body[:120].decode("utf-8", errors="replace").strip()
    else:
        detail = _error_message(data) if isinstance(data, dict) else str(data)[:120]
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def predict_reply(body: bytes) -> tuple[int, str | None]:
    """Output tokens of a ``/predict`` reply (``usage.completion_tokens``, else the
    answer's words) and an error when the body is not the expected JSON."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 0, "predict: the reply is not JSON"
    if not isinstance(data, dict):
        return 0, "predict: the reply is not a JSON object"
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return usage["completion_tokens"], None
    answer = data.get("response")
    if isinstance(answer, str):
        return len(answer.split()), None
    return 0, "predict: the reply has no `response`"
