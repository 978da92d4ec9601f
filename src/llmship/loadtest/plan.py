"""What one load test does: target, endpoint, load model, duration, prompts.

A :class:`LoadPlan` is validated here, written as JSON for the load generator
(``llmship.loadtest.worker``, a separate process) and read back there. This module
imports only the standard library and ``llmship.errors``: the worker imports it
before gevent patches the process.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from llmship.errors import InvalidRequestError, SpecError

Endpoint = Literal["chat", "completions", "predict"]
Arrival = Literal["constant", "poisson"]

ENDPOINTS: dict[str, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "predict": "/predict",
}
"""``--endpoint`` name -> path below the target's base URL."""
ARRIVALS = ("constant", "poisson")
DEFAULT_PROMPT = "请解释什么是量子计算"
"""The seed's example prompt ("please explain what quantum computing is")."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``30s``, ``2m``, ``1m30s``, ``500ms``, ``1.5h`` or a bare
    number of seconds (``90``). Raises ``ValueError`` with what is accepted."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError(
                f"not a duration: {text!r} (use e.g. 30s, 2m, 1m30s, 500ms or 90 for seconds)"
            ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r} (it must be a finite, non-negative time)")
    return seconds


@dataclass(frozen=True)
class Prompt:
    """One request's input: a text prompt, or chat ``messages`` (role/content dicts)."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None

    def as_messages(self) -> list[dict[str, str]]:
        """Chat messages for ``/v1/chat/completions``."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.text or ""}]

    def as_text(self) -> str:
        """A plain prompt for ``/v1/completions`` and ``/predict`` (messages joined)."""
        if self.text is not None:
            return self.text
        return "\n".join(m.get("content", "") for m in self.messages or ())

    def to_json(self) -> dict[str, Any]:
        if self.messages is not None:
            return {"messages": [dict(m) for m in self.messages]}
        return {"prompt": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prompt:
        if "messages" in data:
            return cls(messages=tuple(dict(m) for m in data["messages"]))
        return cls(text=str(data["prompt"]))


def load_prompts(path: Path) -> tuple[Prompt, ...]:
    """Prompts from ``path``: JSONL rows with ``prompt`` or ``input`` (a string) or
    ``messages`` (a golden dataset works as is), or a text file with one prompt per
    line. A bad row is reported as ``file:line: what is wrong``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the prompts file: {exc.strerror or exc}") from exc
    prompts: list[Prompt] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or (not jsonl and line.lstrip().startswith("#")):
            continue
        prompts.append(_prompt_row(line, f"{path}:{number}") if jsonl else Prompt(text=line))
    if not prompts:
        raise SpecError(f"{path}: no prompts in the file")
    return tuple(prompts)


def _prompt_row(line: str, where: str) -> Prompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}: not valid JSON: {exc.msg}") from exc
    if not isinstance(row, dict):
        raise SpecError(f"{where}: a row must be a JSON object")
    messages = row.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise SpecError(f"{where}: `messages` must be a non-empty list")
        for message in messages:
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise SpecError(f"{where}: each message needs string `role` and `content`")
        return Prompt(
            messages=tuple({"role": m["role"], "content": m["content"]} for m in messages)
        )
    for key in ("prompt", "input"):
        value = row.get(key)
        if isinstance(value, str) and value:
            return Prompt(text=value)
    raise SpecError(f"{where}: a row needs `prompt` or `input` (a string) or `messages`")


def base_url(url: str) -> str:
    """The service's base URL: no trailing slash, no ``/v1`` (OpenAI SDK style) suffix."""
    value = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", value):
        raise InvalidRequestError(f"--target must be an http(s) URL, not {url!r}")
    return value[: -len("/v1")] if value.endswith("/v1") else value


@dataclass(frozen=True)
class LoadPlan:
    """One load test. Closed loop (``users``) unless ``rate`` is set (open loop)."""

    target: str
    """Base URL of the service (``http://127.0.0.1:8000``)."""
    endpoint: Endpoint = "chat"
    users: int = 1
    """Closed loop: concurrent users, each sending its next request when the last ends."""
    spawn_rate: float | None = None
    """Users started per second (default: all of them within one second)."""
    rate: float | None = None
    """Open loop: requests per second, whatever the server's speed."""
    arrival: Arrival = "constant"
    """Open loop: ``constant`` spacing or ``poisson`` (exponential gaps, seeded)."""
    seed: int = 0
    duration: float = 30.0
    """Seconds measured, after the warm-up."""
    warmup: float = 0.0
    """Seconds of load before measuring; requests sent then are not counted."""
    prompts: tuple[Prompt, ...] = field(default_factory=lambda: (Prompt(text=DEFAULT_PROMPT),))
    max_tokens: int = 100
    model: str | None = None
    """The ``model`` field of OpenAI requests (found through ``/v1/models`` when None)."""
    max_in_flight: int = 256
    """Open loop: most requests in flight; arrivals beyond it are dropped and counted."""
    timeout: float = 60.0
    """Seconds to connect, and the longest wait for the next bytes of a response."""
    drain_timeout: float = 30.0
    """After the measured time, seconds to let requests in flight finish."""

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint]

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate if self.spawn_rate is not None else float(min(self.users, 100))

    def validated(self) -> LoadPlan:
        """This plan, or an ``InvalidRequestError`` that names the flag to fix."""
        problems = []
        if self.endpoint not in ENDPOINTS:
            problems.append(f"--endpoint must be one of {', '.join(ENDPOINTS)}")
        if self.arrival not in ARRIVALS:
            problems.append(f"--arrival must be one of {', '.join(ARRIVALS)}")
        if self.users < 1:
            problems.append("--users must be at least 1")
        if self.spawn_rate is not None and not self.spawn_rate > 0:
            problems.append("--spawn-rate must be above 0")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            problems.append("--rate must be a positive number of requests per second")
        if not self.duration > 0:
            problems.append("--duration must be above 0")
        if self.max_tokens < 1:
            problems.append("--max-tokens must be at least 1")
        if not self.timeout > 0:
            problems.append("--timeout must be above 0")
        if self.max_in_flight < 1:
            problems.append("--max-in-flight must be at least 1")
        if not self.prompts:
            problems.append("no prompts")
        if problems:
            raise InvalidRequestError("; ".join(problems))
        return replace(self, target=base_url(self.target))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = [p.to_json() for p in self.prompts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadPlan:
        values = dict(data)
        values["prompts"] = tuple(Prompt.from_json(p) for p in values["prompts"])
        return cls(**values)
