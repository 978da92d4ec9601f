"""Recent outcomes per release, kept in memory for analysis (``GET /api/v1/stats``)."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmship.analysis.stats import VersionStats

HORIZON_SECONDS = 3600.0
"""Outcomes older than this are dropped: no analysis window is longer."""
MAX_PER_RELEASE = 100_000


@dataclass(frozen=True)
class Outcome:
    """One answered request (or one mirrored request, for a shadow release)."""

    at: float
    error: bool
    latency: float | None = None
    ttft: float | None = None
    """Streamed answers only: a whole JSON answer's time is not a time to first token."""
    tokens_per_second: float | None = None
    similarity: float | None = None
    tpot: float | None = None
    """Seconds per output token after the first (streamed, two tokens or more)."""


class WindowStats:
    """Per-release outcomes of the last hour, answering "what happened in the last N s"."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._outcomes: dict[str, collections.deque[Outcome]] = {}

    def _add(self, ref: str, outcome: Outcome) -> None:
        queue = self._outcomes.get(ref)
        if queue is None:
            queue = self._outcomes[ref] = collections.deque(maxlen=MAX_PER_RELEASE)
        queue.append(outcome)
        horizon = outcome.at - HORIZON_SECONDS
        while queue and queue[0].at < horizon:
            queue.popleft()

    def request(
        self,
        ref: str,
        *,
        error: bool,
        latency: float | None = None,
        ttft: float | None = None,
        tokens_per_second: float | None = None,
        tpot: float | None = None,
    ) -> None:
        """Record a request answered by ``ref`` (or failed by it, when ``error``); ``ttft``
        and ``tpot`` only for a streamed answer (None otherwise)."""
        self._add(ref, Outcome(self.clock(), error, latency, ttft, tokens_per_second, tpot=tpot))

    def shadow(self, ref: str, *, error: bool, similarity: float | None = None) -> None:
        """Record a mirrored request to the shadow release ``ref``."""
        self._add(ref, Outcome(self.clock(), error, similarity=similarity))

    def recent_requests(self, window_s: float) -> int:
        """Requests (and mirrored requests) of every release over the last ``window_s``
        seconds: what a gateway reports in its heartbeat."""
        since = self.clock() - window_s
        count = 0
        for queue in list(self._outcomes.values()):
            for outcome in reversed(queue):
                if outcome.at < since:
                    break
                count += 1
        return count

    def stats(
        self,
        ref: str,
        window_s: float,
        *,
        ratings: list[int] | None = None,
        thumbs_up: int = 0,
        thumbs_down: int = 0,
    ) -> VersionStats:
        """What ``ref`` did in the last ``window_s`` seconds, with its feedback added."""
        since = self.clock() - window_s
        recent = [o for o in self._outcomes.get(ref, ()) if o.at >= since]
        errors = sum(o.error for o in recent)
        rates = [o.tokens_per_second for o in recent if o.tokens_per_second is not None]
        answered = [o for o in recent if o.latency is not None and not o.error]
        return VersionStats(
            requests=len(recent),
            errors=errors,
            error_rate=errors / len(recent) if recent else math.nan,
            latencies=[o.latency for o in answered if o.latency is not None],
            ttfts=[o.ttft for o in answered if o.ttft is not None],
            tokens_per_second=sum(rates) / len(rates) if rates else math.nan,
            tokens_per_second_samples=len(rates),
            ratings=list(ratings or []),
            thumbs_up=thumbs_up,
            thumbs_down=thumbs_down,
            shadow_similarities=[o.similarity for o in recent if o.similarity is not None],
            tpots=[o.tpot for o in answered if o.tpot is not None],
            timings=[(o.latency, o.ttft, o.tpot) for o in answered if o.latency is not None],
        )
