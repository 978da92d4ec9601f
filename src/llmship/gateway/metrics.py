"""Prometheus metrics of the gateway, labelled by the ``version`` and ``variant`` that answered."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmship._request_metrics import request_series
from llmship.gateway.window import WindowStats
from llmship.routing import TrafficPolicy

OVERHEAD_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)
SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class GatewayMetrics:
    """The gateway's series, in their own registry (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.window = WindowStats()
        """Recent outcomes per release, for analysis (not a Prometheus series)."""
        r = self.registry
        series = request_series(
            r,
            extra_labels=("variant",),
            requests_help="HTTP requests answered by the gateway.",
            latency_help="End-to-end time of a proxied request at the gateway.",
            ttft_help="Time to the first byte of the model server's streamed answer; "
            "streamed requests only (a non-streamed answer has no first token).",
            tokens_per_second_help=(
                "Completion tokens per second of each answer (from its usage), end to end."
            ),
            tpot_help="Time per output token after the first of each successful streamed "
            "answer of two tokens or more: (latency - TTFT) / (completion tokens - 1).",
        )
        self.requests, self.latency, self.ttft = series.requests, series.latency, series.ttft
        self.tokens_per_second, self.tpot = series.tokens_per_second, series.tpot
        self.overhead = Histogram(
            "llmship_gateway_overhead_seconds",
            "Time the gateway adds: its total time minus the time waiting on the model server.",
            ["route", "version", "variant"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.traffic_weight = Gauge(
            "llmship_traffic_weight",
            "Share of ordinary traffic (percent) the policy gives each variant.",
            ["version", "variant"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "llmship_upstream_failures",
            "Model server failures seen by the gateway (before the first byte or mid-stream).",
            ["version", "variant", "reason"],
            registry=r,
        )
        self.upstream_replicas = Gauge(
            "llmship_upstream_replicas",
            "Live model servers (replicas) of each release by the balancer's state: `in` "
            "rotation, or `out` (failed recently; backing off until a trial request).",
            ["version", "state"],
            registry=r,
        )
        self.upstream_outstanding = Gauge(
            "llmship_upstream_outstanding",
            "Requests this gateway has open on each replica, from sending until the answer "
            "is fully streamed (what least-outstanding balancing compares).",
            ["version", "replica"],
            registry=r,
        )
        self.shadow_similarity = Histogram(
            "llmship_shadow_similarity",
            "ROUGE-L F1 between a shadow release's answer and the answer the client got.",
            ["version"],
            buckets=SIMILARITY_BUCKETS,
            registry=r,
        )
        self.shadow_requests = Counter(
            "llmship_shadow_requests",
            "Mirrored requests by outcome: ok, error, or dropped (too many in flight).",
            ["version", "outcome"],
            registry=r,
        )
        self.unkeyed = Counter(
            "llmship_unkeyed_requests",
            "Experiment requests without a user key (assigned at random, not sticky).",
            ["experiment"],
            registry=r,
        )
        self.policy_revision = Gauge(
            "llmship_policy_revision",
            "Revision of the traffic policy the gateway routes by.",
            registry=r,
        )
        self.registry_up = Gauge(
            "llmship_registry_up",
            "1 when the gateway's last read of the registry succeeded, 0 otherwise.",
            registry=r,
        )
        self.feedback_ratings = Counter(
            "llmship_feedback_ratings",
            "Ratings (1..5) accepted on answers, by the release and variant that answered.",
            ["version", "variant", "rating"],
            registry=r,
        )
        self.feedback_thumbs = Counter(
            "llmship_feedback_thumbs",
            "Thumbs (up or down) accepted on answers, by the release and variant that answered.",
            ["version", "variant", "thumb"],
            registry=r,
        )
        self._per_request: dict[tuple[str, str, str], _Children] = {}

    def children(self, route: str, version: str, variant: str) -> _Children:
        """The latency, TTFT, TPOT and overhead histograms of one (route, version, variant)."""
        key = (route, version, variant)
        found = self._per_request.get(key)
        if found is None:
            found = _Children(
                self.latency.labels(route=route, version=version, variant=variant),
                self.ttft.labels(route=route, version=version, variant=variant),
                self.overhead.labels(route=route, version=version, variant=variant),
                self.tpot.labels(route=route, version=version, variant=variant),
            )
            self._per_request[key] = found
        return found

    def count_feedback(self, version: str, variant: str, kind: str, value: int) -> None:
        """Count one accepted rating (``kind="rating"``, 1..5) or thumbs (1 up, 0 down)."""
        if kind == "rating":
            self.feedback_ratings.labels(version=version, variant=variant, rating=str(value)).inc()
        else:
            thumb = "up" if value else "down"
            self.feedback_thumbs.labels(version=version, variant=variant, thumb=thumb).inc()

    def show_policy(self, policy: TrafficPolicy) -> None:
        """Set the weight gauges and the revision from ``policy``."""
        refs = {"stable": policy.stable, "canary": policy.canary}
        if policy.experiment:
            refs |= {v.name: v.ref for v in policy.experiment.variants}
        self.traffic_weight.clear()
        for variant, weight in policy.weights().items():
            self.traffic_weight.labels(version=refs.get(variant) or "", variant=variant).set(weight)
        self.policy_revision.set(policy.revision)


class _Children:
    """Labelled histograms of one (route, version, variant), looked up once."""

    __slots__ = ("latency", "overhead", "tpot", "ttft")

    def __init__(self, latency: Histogram, ttft: Histogram, overhead: Histogram, tpot: Histogram):
        self.latency = latency
        self.ttft = ttft
        self.overhead = overhead
        self.tpot = tpot
