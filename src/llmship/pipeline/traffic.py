"""Requests a pipeline sends through an environment's gateway: one smoke test (which
release answered?) and live traffic at a few requests per second while a rollout
runs, so that its analysis has real requests to judge.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["PROMPTS", "Answer", "LiveTraffic", "smoke_request"]

VERSION_HEADER = "x-llmship-version"
PROMPTS = ("Say hello.", "What is the capital of France?", "Name a colour.", "Count to three.")
"""What the smoke test and the live traffic ask."""
MAX_TOKENS = 16
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Answer:
    """One chat completion through a gateway: who answered, and what."""

    status: int | None
    """The HTTP status; None when no answer came."""
    version: str | None
    """``X-Llmship-Version``: the release that answered."""
    text: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        if not self.ok:
            return f"HTTP {self.status}: {self.error[:120]}"
        return f"answered by {self.version}"


def smoke_request(
    url: str, prompt: str = PROMPTS[0], *, client: httpx.Client | None = None
) -> Answer:
    """One chat completion through the gateway at ``url`` (no model named: the
    gateway's routing picks the release)."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    try:
        if client is None:
            response = httpx.post(
                f"{url}/v1/chat/completions", json=body, timeout=REQUEST_TIMEOUT_S
            )
        else:
            response = client.post(f"{url}/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return Answer(status=None, version=None, error=f"{type(exc).__name__}: {exc}")
    version = response.headers.get(VERSION_HEADER)
    if response.status_code != 200:
        return Answer(status=response.status_code, version=version, error=response.text)
    try:
        text = str(response.json()["choices"][0]["message"]["content"] or "")
    except (ValueError, KeyError, IndexError, TypeError):
        text = ""
    return Answer(status=200, version=version, text=text)


class LiveTraffic:
    """Chat completions through a gateway at ``rps`` per second, from a background
    thread, until :meth:`stop` (which returns what was sent and who answered)."""

    def __init__(self, url: str, rps: float) -> None:
        self.url = url
        self.interval = 1.0 / max(rps, 0.1)
        self.sent = 0
        self.errors = 0
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmship-live-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop sending (after the request in flight); what was sent."""
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S + 5)
        return {"sent": self.sent, "errors": self.errors, "versions": dict(self.versions)}

    def _run(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                answer = smoke_request(self.url, PROMPTS[n % len(PROMPTS)], client=client)
                n += 1
                self.sent += 1
                if answer.ok and answer.version:
                    self.versions[answer.version] += 1
                else:
                    self.errors += 1
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at, time.monotonic() - self.interval)
