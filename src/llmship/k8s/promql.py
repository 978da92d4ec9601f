"""The builtin analysis metrics as PromQL over llmship's own metric names.

The ``builtin`` provider reads the gateway's per-release statistics; under Argo
Rollouts the same numbers come from Prometheus instead. :func:`builtin_query`
writes, for one builtin metric, an instant query that gives one sample with the
metric's value, or no sample at all when fewer than ``minSamples`` samples stand
behind it (the renderer's conditions turn "no sample" into Inconclusive, as the
builtin provider does)::

    (sum(increase(http_requests_total{version="{{args.version}}",variant="",
      route=~"/v1/chat/completions|/v1/completions|/predict",status=~"5.."}[1m])) or vector(0))
    / sum(increase(http_requests_total{...}[1m]))
    and on() sum(increase(http_requests_total{...}[1m])) >= 1

Requests, latencies, TTFT, TPOT and tokens/s are read from the model servers' series
(``variant=""``: a gateway's copies of the same requests carry a variant and are
left out, so no request counts twice); feedback and shadow similarity only exist
on the gateway. Differences from the builtin provider, which the docs repeat:
quantiles are interpolated inside histogram buckets (not between samples),
``increase()`` extrapolates counts to the window's edges, and a stream that
fails after its first byte is a 200 for the model server.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmship.analysis.durations import format_duration
from llmship.analysis.stats import BUILTIN_METRICS

__all__ = [
    "GENERATION_ROUTES",
    "GOODPUT_HAS_NO_PROMQL",
    "VERSION_ARG",
    "BuiltinQuery",
    "builtin_query",
    "promql_duration",
]

GENERATION_ROUTES = "/v1/chat/completions|/v1/completions|/predict"
"""The routes whose requests count, as the gateway's routed paths (not probes, ``/metrics``
or ``/v1/models``)."""

VERSION_ARG = "{{args.version}}"
"""The Argo template argument the queries select the release by (``NAME@VERSION``)."""


_HISTOGRAMS = {
    "latency": "model_latency_seconds",
    "ttft": "llm_time_to_first_token_seconds",
    "tpot": "llm_time_per_output_token_seconds",
}
"""The histogram each family of quantile metrics reads (TTFT and TPOT: streamed only)."""

GOODPUT_HAS_NO_PROMQL = (
    "goodput judges each request against every SLO at once (TTFT, TPOT and end-to-end "
    "together), which separate Prometheus histograms cannot tell; only the llmship "
    "gateway's own statistics measure it"
)


@dataclass(frozen=True)
class BuiltinQuery:
    """One builtin metric in PromQL: its value, what counts as a sample, the caveat."""

    value: str
    """Instant query of the value (one sample, or none without traffic)."""
    samples: str | None
    """Instant query of how many samples stand behind the value (None: ``request_count``,
    which always has a value)."""
    caveat: str
    """How the value differs from the builtin provider's."""

    def guarded(self, min_samples: int) -> str:
        """The value, or no sample when fewer than ``min_samples`` samples stand behind it."""
        if self.samples is None:
            return self.value
        return f"({self.value}) and on() ({self.samples}) >= {min_samples}"


def promql_duration(seconds: float) -> str:
    """A PromQL range duration for ``seconds``: ``1m``, ``1m30s``, or whole milliseconds
    (PromQL takes no fractions)."""
    if seconds != int(seconds):
        return f"{max(round(seconds * 1000), 1)}ms"
    return format_duration(seconds)


def _selector(version: str, *extra: str) -> str:
    return "{" + ",".join((f'version="{version}"', *extra)) + "}"


def _with(selector: str, matcher: str) -> str:
    return selector[:-1] + "," + matcher + "}"


def _increase(metric: str, selector: str, window: str) -> str:
    return f"sum(increase({metric}{selector}[{window}]))"


def _mean(family: str, selector: str, window: str, caveat: str) -> BuiltinQuery:
    """The mean of histogram ``family``'s observations in the window; each one a sample."""
    count = _increase(f"{family}_count", selector, window)
    return BuiltinQuery(f"{_increase(f'{family}_sum', selector, window)} / {count}", count, caveat)


def builtin_query(metric: str, window_s: float, version: str = VERSION_ARG) -> BuiltinQuery:
    """The PromQL of builtin ``metric`` over the last ``window_s`` seconds for the release
    whose ``version`` label is ``version``; KeyError for an unknown metric, ValueError
    for ``goodput`` (no PromQL can judge a request against several SLOs at once)."""
    if metric not in BUILTIN_METRICS:
        raise KeyError(metric)
    w = promql_duration(window_s)
    served = _selector(version, 'variant=""', f'route=~"{GENERATION_ROUTES}"')
    if metric in ("error_rate", "request_count"):
        requests = _increase("http_requests_total", served, w)
        if metric == "request_count":
            return BuiltinQuery(
                f"{requests} or vector(0)",
                None,
                "increase() extrapolates to the window's edges: not always a whole number",
            )
        errors = _increase("http_requests_total", _with(served, 'status=~"5.."'), w)
        return BuiltinQuery(
            f"({errors} or vector(0)) / {requests}",
            requests,
            "5xx answers of the model servers; a stream that fails after its first byte is "
            "a 200 there (the gateway counts it as an error)",
        )
    if metric == "goodput":
        raise ValueError(GOODPUT_HAS_NO_PROMQL)
    if metric.startswith(("latency_", "ttft_", "tpot_")):
        family = _HISTOGRAMS[metric.partition("_")[0]]
        q = int(metric.rsplit("_p", 1)[1]) / 100
        buckets = f"sum by (le) (rate({family}_bucket{served}[{w}]))"
        return BuiltinQuery(
            f"histogram_quantile({q:g}, {buckets})",
            _increase(f"{family}_count", served, w),
            "interpolated inside the histogram's buckets, not between samples: exact only "
            "at bucket bounds, and never above the highest finite bound",
        )
    if metric == "tokens_per_second":
        return _mean(
            "tokens_per_second",
            _selector(version, 'variant=""'),
            w,
            "the mean over requests that produced tokens; minSamples counts those requests",
        )
    if metric == "feedback_mean":
        sel = _selector(version)
        rated = [
            _increase("llmship_feedback_ratings_total", _with(sel, f'rating="{r}"'), w)
            for r in range(1, 6)
        ]
        terms = " + ".join(f"{r} * ({q} or vector(0))" for r, q in enumerate(rated, 1))
        count = _increase("llmship_feedback_ratings_total", sel, w)
        return BuiltinQuery(
            f"({terms}) / {count}",
            count,
            "ratings the gateways accepted for answers of this release",
        )
    if metric == "thumbs_up_rate":
        sel = _selector(version)
        total = _increase("llmship_feedback_thumbs_total", sel, w)
        up = _increase("llmship_feedback_thumbs_total", _with(sel, 'thumb="up"'), w)
        return BuiltinQuery(
            f"({up} or vector(0)) / {total}",
            total,
            "thumbs the gateways accepted for answers of this release",
        )
    return _mean(
        "llmship_shadow_similarity",
        _selector(version),
        w,
        "computed by the gateway that mirrors the requests",
    )
