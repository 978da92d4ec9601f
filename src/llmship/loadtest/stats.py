"""From request records to the numbers of a load test: latency distributions,
throughput, tokens/s, goodput, and a timeline for the plots. Pure functions.

TTFT and TPOT are over streamed answers only (``/predict`` has neither).

Requests *sent* during the warm-up are not counted; the measured window is
``[window_start, window_end)`` by send time. Rates divide by
``elapsed``: the window, or longer when the last measured request ended later.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmship.loadtest.measure import RequestRecord

METRICS = ("ttft", "tpot", "itl", "e2e")
"""Latency metrics, in seconds."""
STATS = ("mean", "p50", "p90", "p95", "p99")
"""Statistics reported (and gated on) for each latency metric."""
METRIC_NAMES = {
    "ttft": "time to first token",
    "tpot": "time per output token",
    "itl": "inter-token latency",
    "e2e": "end-to-end latency",
}


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    k = (len(xs) - 1) * q / 100
    low = math.floor(k)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (k - low)


@dataclass(frozen=True)
class Distribution:
    """Summary of one latency metric (seconds)."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        if not values:
            return None
        xs = sorted(values)
        return cls(
            count=len(xs),
            mean=math.fsum(xs) / len(xs),
            p50=percentile(xs, 50),
            p90=percentile(xs, 90),
            p95=percentile(xs, 95),
            p99=percentile(xs, 99),
            min=xs[0],
            max=xs[-1],
        )

    def stat(self, name: str) -> float:
        value: float = getattr(self, name)
        return value

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Distribution | None:
        """A distribution as ``LoadTestStats.to_json`` wrote it (None stays None)."""
        return None if data is None else cls(**data)


@dataclass(frozen=True)
class LoadTestStats:
    """The measured numbers of one run."""

    requests: int
    """Measured requests that completed (successes + errors)."""
    successes: int
    errors: int
    error_rate: float
    sent: int
    """Requests sent in the measured window."""
    dropped: int
    """Open loop: arrivals not sent because ``max_in_flight`` requests were running."""
    incomplete: int
    """Measured requests still running when the run ended (after the drain timeout)."""
    warmup_requests: int
    duration: float
    elapsed: float
    throughput: float
    """Successful requests per second."""
    sent_rate: float
    """Requests sent per second of the window (the achieved arrival rate)."""
    output_tokens: int
    tokens_per_second: float
    good_requests: int
    goodput: float
    """Successful requests per second that met every per-request SLO (vLLM's goodput)."""
    ttft: Distribution | None
    tpot: Distribution | None
    itl: Distribution | None
    e2e: Distribution | None
    errors_by_kind: dict[str, int]
    versions: dict[str, int]
    goodput_ratio: float | None = None
    """The share of the measured requests (errors included) that met every per-request
    SLO: ``good_requests / requests``; None without requests."""

    def distribution(self, metric: str) -> Distribution | None:
        value: Distribution | None = getattr(self, metric)
        return value

    def value(self, key: str) -> float | None:
        """A number by SLO key: ``ttft_p95``, ``error_rate``, ``throughput_min`` ...
        (None when nothing was measured)."""
        metric, _, stat = key.partition("_")
        if metric in METRICS and stat in STATS:
            dist = self.distribution(metric)
            return dist.stat(stat) if dist else None
        plain = {
            "error_rate": self.error_rate if self.requests else None,
            "throughput_min": self.throughput,
            "tokens_per_second_min": self.tokens_per_second,
            "goodput_min": self.goodput,
            "goodput_ratio_min": self.goodput_ratio,
        }
        if key not in plain:
            raise KeyError(key)
        return plain[key]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadTestStats:
        """The numbers as :meth:`to_json` wrote them (a stored report's ``results``)."""
        fields = dict(data)
        for metric in METRICS:
            fields[metric] = Distribution.from_json(fields.get(metric))
        fields["errors_by_kind"] = dict(fields["errors_by_kind"])
        fields["versions"] = dict(fields["versions"])
        if "goodput_ratio" not in fields:  # a report from before the field
            requests = fields["requests"]
            fields["goodput_ratio"] = fields["good_requests"] / requests if requests else None
        return cls(**fields)


def measured(
    records: Iterable[RequestRecord], window_start: float, window_end: float
) -> list[RequestRecord]:
    """The records of requests sent within the measured window."""
    return [r for r in records if window_start <= r.start < window_end]


def summarize(
    records: Sequence[RequestRecord],
    *,
    window_start: float,
    window_end: float,
    sent: int,
    dropped: int = 0,
    incomplete: int = 0,
    good: Callable[[RequestRecord], bool] | None = None,
) -> LoadTestStats:
    """The numbers of a run from all its records (warm-up ones are left out here).
    ``good`` decides per request whether it met the SLOs (default: it succeeded)."""
    duration = window_end - window_start
    window = measured(records, window_start, window_end)
    warmup = sum(1 for r in records if r.start < window_start)
    ok = [r for r in window if r.ok]
    last_end = max((r.end for r in window), default=window_start)
    elapsed = max(duration, last_end - window_start, 1e-9)
    tokens = sum(r.output_tokens for r in ok)
    good_count = sum(1 for r in ok if good is None or good(r))
    errors = len(window) - len(ok)
    return LoadTestStats(
        requests=len(window),
        successes=len(ok),
        errors=errors,
        error_rate=errors / len(window) if window else 0.0,
        sent=sent,
        dropped=dropped,
        incomplete=incomplete,
        warmup_requests=warmup,
        duration=duration,
        elapsed=elapsed,
        throughput=len(ok) / elapsed,
        sent_rate=sent / duration if duration > 0 else 0.0,
        output_tokens=tokens,
        tokens_per_second=tokens / elapsed,
        good_requests=good_count,
        goodput=good_count / elapsed,
        goodput_ratio=good_count / len(window) if window else None,
        ttft=Distribution.of([t for r in ok if (t := r.first_token) is not None]),
        tpot=Distribution.of([t for r in ok if (t := r.tpot) is not None]),
        itl=Distribution.of([gap for r in ok for gap in r.itl]),
        e2e=Distribution.of([r.e2e for r in ok]),
        errors_by_kind=dict(Counter(_kind(r.error) for r in window if r.error).most_common()),
        versions=dict(Counter(r.version for r in window if r.version).most_common()),
    )


def _kind(error: str) -> str:
    """Errors grouped by their first part (``HTTP 429``, ``ConnectionRefusedError``)."""
    head = error.split(":", 1)[0].strip()
    return head[:60] or "error"


@dataclass(frozen=True)
class TimelineBin:
    """One time bin of the measured window (by send time), as the HTML report plots it."""

    t: float
    """Seconds from the window's start to the bin's start."""
    width: float
    requests: int
    errors: int
    output_tokens: int
    ttft_p50: float | None
    """TTFT and E2E percentiles of the bin's successful requests (None: there were none)."""
    ttft_p95: float | None
    e2e_p50: float | None
    e2e_p95: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimelineBin:
        return cls(**data)


def timeline(
    records: Sequence[RequestRecord], *, window_start: float, window_end: float, points: int = 60
) -> list[TimelineBin]:
    """Per time bin of the measured window (by send time): requests, errors, output
    tokens, TTFT and E2E p50/p95 of successful requests — what the HTML report plots."""
    duration = window_end - window_start
    window = measured(records, window_start, window_end)
    width = max(1.0, math.ceil(duration / points))
    count = max(1, round(duration / width))
    bins: list[list[RequestRecord]] = [[] for _ in range(count)]
    for record in window:
        bins[min(count - 1, int((record.start - window_start) // width))].append(record)
    rows = []
    for index, members in enumerate(bins):
        ok = [r for r in members if r.ok]
        ttfts = [t for r in ok if (t := r.first_token) is not None]
        e2es = [r.e2e for r in ok]
        rows.append(
            TimelineBin(
                t=index * width,
                width=width,
                requests=len(members),
                errors=len(members) - len(ok),
                output_tokens=sum(r.output_tokens for r in ok),
                ttft_p50=percentile(ttfts, 50) if ttfts else None,
                ttft_p95=percentile(ttfts, 95) if ttfts else None,
                e2e_p50=percentile(e2es, 50) if e2es else None,
                e2e_p95=percentile(e2es, 95) if e2es else None,
            )
        )
    return rows
