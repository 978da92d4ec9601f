"""Per-version statistics from the gateway, and the builtin metrics derived from them.

The gateway knows, for each release it routed to, what happened over a recent
window. A :class:`StatsSource` hands that over as :class:`VersionStats`; the
``builtin`` provider turns it into one number per metric name
(:data:`BUILTIN_METRICS`). The source that reads the gateway's
``GET /api/v1/stats?env=&window=`` lives with the controller. With several
gateways, each one's stats are combined by :func:`merge_stats` (counts summed,
samples pooled, so a quantile is over every request); a source that misses a
gateway carrying traffic raises :class:`IncompleteStats`, which makes the
measurement Inconclusive.

Latency definitions (docs/analysis.md repeats them): TTFT is measured only for
streamed answers (a whole JSON answer has no first token the client sees); TPOT
is vLLM's ``(e2e - ttft) / (output_tokens - 1)`` for streamed answers of two
tokens or more; goodput is the share of requests that met every SLO of a
:class:`GoodputSlo` (errors never do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "BUILTIN_METRICS",
    "BuiltinMetricInfo",
    "GoodputSlo",
    "IncompleteStats",
    "StatsSource",
    "VersionStats",
    "builtin_value",
    "goodput",
    "merge_stats",
    "quantile",
    "quantile_samples",
    "sample_size",
    "time_per_output_token",
]


@dataclass(frozen=True)
class VersionStats:
    """What one release did over a window (all fields count only that window)."""

    requests: int = 0
    """Requests answered (successes and errors)."""
    errors: int = 0
    """Requests that ended in an error (a 5xx or a failed stream)."""
    error_rate: float = math.nan
    """``errors / requests``; NaN without requests."""
    latencies: list[float] = field(default_factory=list)
    """End-to-end seconds of each request."""
    ttfts: list[float] = field(default_factory=list)
    """Seconds to the first token of each successful streamed request (a non-streamed
    answer has no time to first token: its whole time is not one)."""
    tokens_per_second: float = math.nan
    """Mean completion tokens per second; NaN without requests."""
    tokens_per_second_samples: int = 0
    """How many requests ``tokens_per_second`` is the mean of (0: not said, as from a
    gateway before this field; merging then weighs by successful requests)."""
    ratings: list[int] = field(default_factory=list)
    """Feedback ratings (1..5) given to its answers."""
    thumbs_up: int = 0
    thumbs_down: int = 0
    shadow_similarities: list[float] = field(default_factory=list)
    """ROUGE-L F1 of each mirrored answer against the answer the client got (shadow only)."""
    notes: list[str] = field(default_factory=list)
    """What the source wants said with a measurement taken from these stats (e.g. a
    gateway without traffic that did not answer and was left out)."""
    tpots: list[float] = field(default_factory=list)
    """Seconds per output token after the first, ``(e2e - ttft) / (tokens - 1)``, of
    each successful streamed request of two output tokens or more (vLLM's TPOT)."""
    timings: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    """``(e2e, ttft, tpot)`` of each successful request, None where not measured (not
    streamed, one token): what goodput judges request by request."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (NaN stays a float NaN)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionStats:
        """The inverse of :meth:`to_dict`; absent fields take their defaults, unknown ones
        are ignored, ``null`` floats are NaN. ValueError on a value of the wrong type."""
        try:

            def _float(key: str) -> float:
                value = data.get(key)
                return math.nan if value is None else float(value)

            return cls(
                requests=int(data.get("requests", 0)),
                errors=int(data.get("errors", 0)),
                error_rate=_float("error_rate"),
                latencies=[float(v) for v in data.get("latencies") or []],
                ttfts=[float(v) for v in data.get("ttfts") or []],
                tokens_per_second=_float("tokens_per_second"),
                tokens_per_second_samples=int(data.get("tokens_per_second_samples") or 0),
                ratings=[int(v) for v in data.get("ratings") or []],
                thumbs_up=int(data.get("thumbs_up", 0)),
                thumbs_down=int(data.get("thumbs_down", 0)),
                shadow_similarities=[float(v) for v in data.get("shadow_similarities") or []],
                notes=[str(v) for v in data.get("notes") or []],
                tpots=[float(v) for v in data.get("tpots") or []],
                timings=[_timing(v) for v in data.get("timings") or []],
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not version statistics: {exc}") from exc


def _timing(value: Any) -> tuple[float, float | None, float | None]:
    e2e, ttft, tpot = value
    return float(e2e), _maybe(ttft), _maybe(tpot)


def _maybe(value: Any) -> float | None:
    return None if value is None else float(value)


def merge_stats(parts: Sequence[VersionStats]) -> VersionStats:
    """One release's stats from several gateways as if one gateway had seen it all.

    Counts are summed and samples pooled, so a quantile of the result is the
    quantile over the union of every gateway's requests (never an average of
    per-gateway quantiles); ``tokens_per_second`` is the mean weighted by how many
    requests each mean is over; notes are kept in order.
    """
    requests = sum(p.requests for p in parts)
    errors = sum(p.errors for p in parts)
    rated, weighted = 0, 0.0
    for part in parts:
        if math.isnan(part.tokens_per_second):
            continue
        weight = part.tokens_per_second_samples or max(part.requests - part.errors, 1)
        rated += weight
        weighted += part.tokens_per_second * weight
    return VersionStats(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else math.nan,
        latencies=[v for p in parts for v in p.latencies],
        ttfts=[v for p in parts for v in p.ttfts],
        tokens_per_second=weighted / rated if rated else math.nan,
        tokens_per_second_samples=rated,
        ratings=[v for p in parts for v in p.ratings],
        thumbs_up=sum(p.thumbs_up for p in parts),
        thumbs_down=sum(p.thumbs_down for p in parts),
        shadow_similarities=[v for p in parts for v in p.shadow_similarities],
        notes=[note for p in parts for note in p.notes],
        tpots=[v for p in parts for v in p.tpots],
        timings=[v for p in parts for v in p.timings],
    )


def time_per_output_token(e2e: float, ttft: float | None, output_tokens: int) -> float | None:
    """vLLM's TPOT: ``(e2e - ttft) / (output_tokens - 1)``, the time per output token
    after the first; None without a first token (not streamed) or with fewer than two."""
    if ttft is None or output_tokens < 2:
        return None
    return max(0.0, e2e - ttft) / (output_tokens - 1)


class IncompleteStats(Exception):
    """The statistics would miss traffic: a gateway that carried requests (or may have)
    did not answer. Judging the rest could pass a bad release, so the builtin provider
    (and the experiment decision) make the measurement Inconclusive with this message."""


class StatsSource(Protocol):
    """Where the builtin provider gets per-version statistics (the gateways)."""

    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        """What release ``ref`` did in ``env`` over the last ``window_s`` seconds.

        A release that got no traffic gives empty stats; a source that misses
        traffic raises :class:`IncompleteStats` (the measurement becomes
        Inconclusive); one that cannot answer at all raises anything else (the
        measurement becomes an Error).
        """
        ...


SampleKind = Literal[
    "requests", "latencies", "ttfts", "tpots", "judged", "ratings", "thumbs", "similarities", "none"
]


@dataclass(frozen=True)
class BuiltinMetricInfo:
    """One builtin metric: what it means and what it is computed from."""

    description: str
    unit: str
    samples: SampleKind
    """What counts as one sample (the minimum sample size counts these)."""
    higher_is_better: bool
    comparable: bool
    """Whether ``compare: stable`` (a significance test against stable) applies."""


def _quantile_info(what: str, q: int, samples: SampleKind) -> BuiltinMetricInfo:
    return BuiltinMetricInfo(f"{q}th percentile of {what}", "seconds", samples, False, True)


BUILTIN_METRICS: Mapping[str, BuiltinMetricInfo] = {
    "error_rate": BuiltinMetricInfo(
        "share of requests that failed (0..1)", "ratio", "requests", False, True
    ),
    "latency_p50": _quantile_info("end-to-end latency", 50, "latencies"),
    "latency_p95": _quantile_info("end-to-end latency", 95, "latencies"),
    "latency_p99": _quantile_info("end-to-end latency", 99, "latencies"),
    "ttft_p50": _quantile_info("time to first token", 50, "ttfts"),
    "ttft_p95": _quantile_info("time to first token", 95, "ttfts"),
    "ttft_p99": _quantile_info("time to first token", 99, "ttfts"),
    "tpot_p50": _quantile_info("time per output token", 50, "tpots"),
    "tpot_p95": _quantile_info("time per output token", 95, "tpots"),
    "tpot_p99": _quantile_info("time per output token", 99, "tpots"),
    "goodput": BuiltinMetricInfo(
        "share of requests that met every SLO: TTFT, TPOT and end-to-end (0..1)",
        "ratio",
        "judged",
        True,
        False,
    ),
    "tokens_per_second": BuiltinMetricInfo(
        "mean completion tokens per second", "tokens/s", "requests", True, False
    ),
    "request_count": BuiltinMetricInfo(
        "requests answered in the window", "requests", "none", True, False
    ),
    "feedback_mean": BuiltinMetricInfo(
        "mean feedback rating (1..5)", "rating", "ratings", True, True
    ),
    "thumbs_up_rate": BuiltinMetricInfo(
        "thumbs up / (thumbs up + thumbs down)", "ratio", "thumbs", True, True
    ),
    "shadow_similarity": BuiltinMetricInfo(
        "mean ROUGE-L F1 of mirrored answers against the answers served",
        "ratio",
        "similarities",
        True,
        False,
    ),
}
"""Every builtin metric name, in the order the docs list them."""

_QUANTILED = {"latency": "latencies", "ttft": "ttfts", "tpot": "tpots"}
"""The per-request samples behind each family of quantile metrics."""


@dataclass(frozen=True)
class GoodputSlo:
    """The per-request SLOs goodput judges by (seconds; a request must meet each one
    that was measured for it: TTFT and TPOT only exist for streamed answers)."""

    ttft: float = 2.0
    """Time to first token (the shipped ``SlowFirstToken`` alert's bound)."""
    tpot: float = 0.1
    """Time per output token after the first: 10 tokens/s, faster than people read."""
    e2e: float = 30.0
    """End-to-end latency of the whole answer."""


def goodput(stats: VersionStats, slo: GoodputSlo | None = None) -> float:
    """Share of the judged requests (successes with timings, and errors) whose end-to-end
    time, TTFT (when streamed) and TPOT (when measured) are all within ``slo``; an error
    never meets it. NaN without requests to judge."""
    slo = slo or GoodputSlo()
    judged = len(stats.timings) + stats.errors
    if judged <= 0:
        return math.nan
    good = sum(
        1
        for e2e, ttft, tpot in stats.timings
        if e2e <= slo.e2e
        and (ttft is None or ttft <= slo.ttft)
        and (tpot is None or tpot <= slo.tpot)
    )
    return good / judged


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def sample_size(name: str, stats: VersionStats) -> int:
    """How many samples stand behind metric ``name`` in ``stats``."""
    kind = BUILTIN_METRICS[name].samples
    if kind == "requests":
        return stats.requests
    if kind == "latencies":
        return len(stats.latencies)
    if kind == "ttfts":
        return len(stats.ttfts)
    if kind == "tpots":
        return len(stats.tpots)
    if kind == "judged":
        return len(stats.timings) + stats.errors
    if kind == "ratings":
        return len(stats.ratings)
    if kind == "thumbs":
        return stats.thumbs_up + stats.thumbs_down
    if kind == "similarities":
        return len(stats.shadow_similarities)
    return stats.requests


def builtin_value(name: str, stats: VersionStats, slo: GoodputSlo | None = None) -> float:
    """Metric ``name`` computed from ``stats``; NaN when there is nothing to compute it from.
    ``slo`` is what ``goodput`` judges by (default: :class:`GoodputSlo`'s).

    KeyError for a name not in :data:`BUILTIN_METRICS`.
    """
    if name not in BUILTIN_METRICS:
        raise KeyError(name)
    if name == "request_count":
        return float(stats.requests)
    if name == "error_rate":
        if stats.requests <= 0:
            return math.nan
        if math.isnan(stats.error_rate):
            return stats.errors / stats.requests
        return stats.error_rate
    if name == "tokens_per_second":
        return stats.tokens_per_second if stats.requests > 0 else math.nan
    if name == "goodput":
        return goodput(stats, slo)
    family, _, percent = name.rpartition("_p")
    if family in _QUANTILED:
        return quantile(quantile_samples(name, stats), int(percent) / 100)
    if name == "feedback_mean":
        return _mean(stats.ratings)
    if name == "thumbs_up_rate":
        total = stats.thumbs_up + stats.thumbs_down
        return stats.thumbs_up / total if total else math.nan
    return _mean(stats.shadow_similarities)


def quantile_samples(name: str, stats: VersionStats) -> list[float]:
    """The per-request samples a quantile metric (``latency_p95``, ``tpot_p50`` ...) is
    computed from; KeyError for another metric."""
    family = name.rpartition("_p")[0]
    samples: list[float] = getattr(stats, _QUANTILED[family])
    return samples


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
