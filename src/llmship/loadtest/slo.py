"""Service-level objectives of a load test: parsing, per-request goodput, verdicts.

Keys: ``<metric>_<stat>`` for ``ttft``/``tpot``/``itl``/``e2e`` × ``mean``/``p50``/
``p90``/``p95``/``p99`` (upper bounds in seconds; ``500ms`` is accepted too),
``error_rate`` (upper bound, a fraction or ``1%``), and the lower bounds
``throughput_min`` (successful requests/s), ``tokens_per_second_min``,
``goodput_min`` (requests/s that met every per-request SLO) and
``goodput_ratio_min`` (the share of requests that did, a fraction or ``95%``).

A request counts towards goodput when it succeeded and each of its TTFT, TPOT,
mean ITL and E2E is within the loosest bound given for that metric (DistServe's
goodput, as vLLM's ``--goodput`` applies it per request). TTFT and TPOT bound
streamed answers only: a ``/predict`` answer has neither, and is judged by the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmship.errors import InvalidRequestError
from llmship.loadtest.measure import RequestRecord
from llmship.loadtest.plan import parse_duration
from llmship.loadtest.stats import METRICS, STATS, LoadTestStats

LATENCY_KEYS = tuple(f"{metric}_{stat}" for metric in METRICS for stat in STATS)
LOWER_BOUNDS = ("throughput_min", "tokens_per_second_min", "goodput_min", "goodput_ratio_min")
RATIOS = ("error_rate", "goodput_ratio_min")
"""Keys whose value is a share: a fraction, or a percentage such as ``1%``."""
SLO_KEYS = (*LATENCY_KEYS, "error_rate", *LOWER_BOUNDS)
"""Every valid SLO key."""
UNITS = {"throughput_min": " req/s", "tokens_per_second_min": " tok/s"}


@dataclass(frozen=True)
class SloVerdict:
    """Whether one SLO held, with the measured value and a one-line reason."""

    key: str
    limit: float
    actual: float | None
    passed: bool
    reason: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SloVerdict:
        """A verdict as a report's ``verdicts`` hold it."""
        return cls(
            key=str(data["key"]),
            limit=data["limit"],
            actual=data["actual"],
            passed=bool(data["passed"]),
            reason=str(data["reason"]),
        )


def parse_slo(text: str) -> tuple[str, float]:
    """``ttft_p95=0.5`` -> ``("ttft_p95", 0.5)``; a clear usage error otherwise."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidRequestError(f"--slo {text!r}: write KEY=VALUE, e.g. ttft_p95=0.5")
    key = key.strip()
    return key, slo_value(key, value)


def slo_value(key: str, value: object) -> float:
    """The number an SLO ``key`` is given (checks the key, parses units)."""
    check_key(key)
    text = str(value).strip()
    try:
        if key in LATENCY_KEYS and not isinstance(value, (int, float)):
            number = parse_duration(text)
        elif key in RATIOS and text.endswith("%"):
            number = float(text[:-1]) / 100
        else:
            number = float(text)
    except ValueError:
        raise InvalidRequestError(f"SLO {key}: {value!r} is not a number") from None
    if key in RATIOS and not 0 <= number <= 1:  # also NaN
        what = "an error rate" if key == "error_rate" else "a share of requests"
        raise InvalidRequestError(
            f"SLO {key}: {what} must be between 0 and 100% (0 and 1 as a "
            f"fraction, e.g. 1% or 0.01); {text!r} was given"
        )
    if not math.isfinite(number) or number < 0:
        raise InvalidRequestError(f"SLO {key}: {value!r} must be a finite number >= 0")
    return number


def check_key(key: str) -> None:
    if key not in SLO_KEYS:
        raise InvalidRequestError(f"unknown SLO key {key!r}; valid keys: {', '.join(SLO_KEYS)}")


STREAMED_ONLY = ("ttft", "tpot", "itl")
"""Latency metrics that only a streamed answer has."""


def check_endpoint(slos: Mapping[str, float], endpoint: str) -> None:
    """Refuse, before any load, SLOs that the endpoint cannot measure: ``predict``
    answers whole, so it has no TTFT, TPOT or ITL (its E2E is not a TTFT)."""
    if endpoint != "predict":
        return
    unmeasurable = [key for key in slos if key.partition("_")[0] in STREAMED_ONLY]
    if unmeasurable:
        raise InvalidRequestError(
            f"SLO {', '.join(sorted(unmeasurable, key=SLO_KEYS.index))}: the predict "
            "endpoint answers whole, so it has no time to first token, per output token or "
            "between tokens; bound e2e_* (e.g. e2e_p95=2s), or load a streamed endpoint "
            "(--endpoint chat or completions)",
            param="slo",
        )


def parse_slos(items: Iterable[str]) -> dict[str, float]:
    """``--slo`` flags as a mapping (a later flag for the same key wins)."""
    return dict(parse_slo(item) for item in items)


def request_bounds(slos: Mapping[str, float]) -> dict[str, float]:
    """Per-request bounds for goodput: the loosest bound given per latency metric."""
    bounds: dict[str, float] = {}
    for key, limit in slos.items():
        metric, _, stat = key.partition("_")
        if metric in METRICS and stat in STATS:
            bounds[metric] = max(limit, bounds.get(metric, limit))
    return bounds


def meets(record: RequestRecord, bounds: Mapping[str, float]) -> bool:
    """Whether a request succeeded within every per-request bound."""
    if not record.ok:
        return False
    values = {
        "ttft": record.first_token,
        "tpot": record.tpot,
        "itl": record.mean_itl,
        "e2e": record.e2e,
    }
    for metric, bound in bounds.items():
        value = values[metric]
        if metric == "ttft" and value is None and record.streamed:
            return False  # no token ever came
        if value is not None and value > bound:
            return False
    return True


def evaluate(slos: Mapping[str, float], stats: LoadTestStats) -> list[SloVerdict]:
    """One verdict per SLO, in the order of ``SLO_KEYS``."""
    verdicts = []
    for key in sorted(slos, key=SLO_KEYS.index):
        limit = slos[key]
        actual = stats.value(key)
        if actual is None:
            verdicts.append(SloVerdict(key, limit, None, False, f"{key}: nothing was measured"))
            continue
        lower = key in LOWER_BOUNDS
        passed = actual >= limit if lower else actual <= limit
        sign = (">=" if passed else "<") if lower else ("<=" if passed else ">")
        reason = f"{key} {fmt(key, actual)} {sign} {fmt(key, limit)}"
        verdicts.append(SloVerdict(key, limit, actual, passed, reason))
    return verdicts


def fmt(key: str, value: float) -> str:
    """A value as people read it: ``512 ms``, ``1.2%``, ``3.50 req/s``."""
    if key in LATENCY_KEYS:
        return f"{value * 1000:.4g} ms" if value < 10 else f"{value:.2f} s"
    if key in RATIOS:
        return f"{value * 100:.2f}%"
    return f"{value:.2f}{UNITS.get(key, ' req/s')}"
