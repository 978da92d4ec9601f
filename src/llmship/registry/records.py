"""What the registry hands out: frozen records, never database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmship.release.spec import ReleaseSpec

NO_REASON = "no reason given"
"""The reason recorded (alias history, events) when a person gives none: the CLI's
``--reason`` and the admin API's ``reason`` are optional."""


def given_reason(reason: str | None) -> str:
    """The reason to record: the one given, or :data:`NO_REASON` for none or a blank one."""
    return (reason or "").strip() or NO_REASON


@dataclass(frozen=True)
class ReleaseRecord:
    """A registered release: the immutable spec and who registered it when."""

    id: int
    spec: ReleaseSpec
    digest: str
    """sha256 of the spec's canonical JSON (``ReleaseSpec.digest()``)."""
    created_at: datetime
    created_by: str

    @property
    def name(self) -> str:
        """The release name."""
        return self.spec.name

    @property
    def version(self) -> str:
        """The semantic version."""
        return self.spec.version

    @property
    def backend(self) -> str:
        """``llamacpp`` or ``openai``."""
        return self.spec.backend

    @property
    def ref(self) -> str:
        """``name@version``."""
        return self.spec.ref


@dataclass(frozen=True)
class AliasRecord:
    """Where one alias of one environment points now."""

    env: str
    alias: str
    ref: str
    """``name@version`` of the release the alias points at."""
    release_id: int
    updated_at: datetime


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's append-only history."""

    id: int
    env: str
    alias: str
    from_ref: str | None
    """Where the alias pointed before; None for its first move."""
    to_ref: str
    actor: str
    reason: str
    """Why, as given; :data:`NO_REASON` when nobody said."""
    at: datetime


@dataclass(frozen=True)
class Event:
    """A state change: who did what (``kind``) to which ``subject``, when."""

    id: int
    at: datetime
    actor: str
    kind: str
    subject: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """A running model server of one release in one environment."""

    env: str
    ref: str
    url: str
    """Base URL, e.g. ``http://127.0.0.1:8101`` (the API is under ``/v1``)."""
    pid: int | None
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class GatewayRecord:
    """A running gateway of one environment, as it announced itself (every
    :data:`GATEWAY_HEARTBEAT_S`; gone after :data:`GATEWAY_MAX_AGE_S` without one)."""

    env: str
    instance: str
    """Unique per process: ``host-pid-random``."""
    url: str
    """The base URL other processes reach it at (its admin API is under ``/api/v1``)."""
    pid: int | None
    host: str
    started_at: datetime
    heartbeat_at: datetime
    policy_revision: int | None
    """Revision of the traffic policy it routed by at its last heartbeat."""
    recent_requests: int
    """Requests it answered over the :data:`RECENT_REQUESTS_S` before its last heartbeat."""


GATEWAY_HEARTBEAT_S = 5.0
"""How often a gateway renews its announcement."""
GATEWAY_MAX_AGE_S = 3 * GATEWAY_HEARTBEAT_S
"""A gateway whose heartbeat is older (three missed) is taken for gone."""
RECENT_REQUESTS_S = 60.0
"""The span a gateway's ``recent_requests`` counts over."""


@dataclass(frozen=True)
class QueryRecord:
    """Which release answered a query: what feedback is attributed by."""

    query_id: str
    env: str
    ref: str
    variant: str
    route: str
    status: int
    at: datetime
    user_key: str | None = None
    """X-User-Id, else the OpenAI ``user`` field (the stickiness key)."""
    request_id: str | None = None
    """The client's own ``X-Request-ID`` (a correlation id): never the query id."""


@dataclass(frozen=True)
class FeedbackRecord:
    """A rating (1..5) or a thumbs (up/down) on one query, attributed to its release."""

    query_id: str
    env: str
    ref: str
    kind: str
    """``rating`` or ``thumbs``."""
    value: int
    """1..5 for a rating; 1 (up) or 0 (down) for thumbs."""
    comment: str | None
    at: datetime
    user: str | None = None
    """Who rated: the user named in the rating, else the query's user key; None when
    neither is known (then the answer itself stands for its user)."""


@dataclass(frozen=True)
class FeedbackSummary:
    """Feedback of one release."""

    ref: str
    ratings: int
    mean_rating: float | None
    thumbs_up: int
    thumbs_down: int

    @property
    def thumbs_up_rate(self) -> float | None:
        total = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / total if total else None


@dataclass(frozen=True)
class GateRun:
    """One gate run (``eval`` or ``loadtest``) that judged a release."""

    id: int
    kind: str
    """``eval`` or ``loadtest``."""
    ref: str
    """``NAME@VERSION`` of the release judged (the candidate)."""
    baseline_ref: str | None
    """What it was compared with, when anything."""
    env: str
    passed: bool
    forced: bool
    """True when a person overrode the gate (the reason is in ``summary``)."""
    summary: dict[str, Any]
    """Small: headline numbers, gate verdicts and reasons."""
    report: dict[str, Any]
    """The whole JSON report."""
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout as stored: the fixed part, the state machine's state (``state``, plain
    data) and the columns derived from it for lists and queries."""

    id: int
    env: str
    name: str
    strategy: str
    """``canary``, ``blueGreen``, ``experiment`` or ``shadow``."""
    spec: dict[str, Any]
    """The rollout spec in its file shape (``RolloutSpec.to_dict()``)."""
    candidate: str
    """``NAME@VERSION`` rolled out."""
    stable: str | None
    """``NAME@VERSION`` of ``production`` when the rollout started."""
    phase: str
    """``Pending``, ``Progressing``, ``Paused``, ``Healthy`` or ``Aborted``."""
    step_index: int
    step_started_at: datetime | None
    paused: bool
    pause_reason: str | None
    abort_reason: str | None
    message: str
    """The last transition, for people."""
    state: dict[str, Any]
    active: bool
    """Not finished: the one rollout of its environment the controller runs."""
    created_at: datetime
    created_by: str
    updated_at: datetime
    revision: int
    """Goes up by one with every save; a save names the revision it read."""


@dataclass(frozen=True)
class RolloutUpdate:
    """What a save of a rollout writes (the state machine's state and its summary)."""

    phase: str
    step_index: int
    step_started_at: datetime | None
    paused: bool
    pause_reason: str | None
    abort_reason: str | None
    message: str
    state: dict[str, Any]
    active: bool


@dataclass(frozen=True)
class RolloutIntent:
    """Something asked of a rollout (``promote``, ``promoteFull``, ``pause``, ``resume``,
    ``abort``, ``retry``), waiting for the controller until ``consumed_at``."""

    id: int
    rollout_id: int
    kind: str
    actor: str
    reason: str
    dedupe_key: str | None
    created_at: datetime
    consumed_at: datetime | None
    outcome: str | None
    """What became of it: ``applied``, or why it was refused."""


@dataclass(frozen=True)
class MeasurementRecord:
    """One stored measurement of one metric of one analysis run of a rollout."""

    id: int
    rollout_id: int
    run: str
    metric: str
    phase: str
    value: Any
    """The measured value (JSON: NaN is stored as null)."""
    message: str
    started_at: datetime | None
    at: datetime
    """When the measurement finished."""


@dataclass(frozen=True)
class Lease:
    """A named lease (``controller/ENV``): who holds it, until when, and its fencing
    token, which grows by one whenever the lease changes hands (never on a renewal)."""

    name: str
    holder: str
    """Who holds it, e.g. ``HOST:PID`` of a controller."""
    token: int
    acquired_at: datetime
    """When this holder took it (from someone else, or first)."""
    renewed_at: datetime
    expires_at: datetime
    """Held until then, unless renewed; a released lease expires when released."""

    def live(self, now: datetime) -> bool:
        """True when the lease has not expired at ``now``."""
        return now < self.expires_at
