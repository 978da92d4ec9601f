"""The registry's tables (SQLAlchemy 2 declarative models).

These classes stay inside ``llmship.registry``: the store turns rows into frozen
records before they leave the package. The migrations in
``migrations/versions/`` create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is
    stored as naive UTC and given ``tzinfo=UTC`` again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry timestamps must be timezone-aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


REF_LENGTH = 320
"""Room for ``name@version``: a 63-character name, ``@`` and a 255-character version."""


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class ReleaseRow(Base):
    """One registered release: its spec as canonical JSON and the digest of it."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_releases_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(255))
    backend: Mapped[str] = mapped_column(String(32))
    spec: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))


class AliasRow(Base):
    """Where an alias of one environment points now."""

    __tablename__ = "aliases"

    env: Mapped[str] = mapped_column(String(32), primary_key=True)
    alias: Mapped[str] = mapped_column(String(63), primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", name="fk_aliases_release"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AliasHistoryRow(Base):
    """One move of an alias (append-only): from where, to where, who and why."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_env_alias", "env", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str] = mapped_column(String(63))
    from_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", name="fk_alias_history_from_release")
    )
    to_release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", name="fk_alias_history_to_release")
    )
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class EventRow(Base):
    """Every state change: who did what to which subject, when, with details as JSON."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_kind", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)


class TrafficPolicyRow(Base):
    """The traffic policy of one environment, as JSON (``stable`` is not stored: it is
    always where the environment's ``production`` alias points)."""

    __tablename__ = "traffic_policies"

    env: Mapped[str] = mapped_column(String(32), primary_key=True)
    policy: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(255))


class EndpointRow(Base):
    """A model server of one release in one environment, renewed by its heartbeat."""

    __tablename__ = "endpoints"

    env: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(REF_LENGTH), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), primary_key=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QueryRow(Base):
    """Which release answered one query (what feedback is attributed by)."""

    __tablename__ = "queries"
    __table_args__ = (Index("ix_queries_env_ref_at", "env", "ref", "at"),)

    query_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    variant: Mapped[str] = mapped_column(String(96))
    route: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    user_key: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))
    """The client's X-Request-ID (a correlation id), when it sent a sane one."""


class FeedbackRow(Base):
    """One rating or thumbs by one user on one query; a second one of the same kind by
    the same user replaces it. ``user_key`` is ``""`` when no user is known (then one
    per query)."""

    __tablename__ = "feedback"
    __table_args__ = (
        PrimaryKeyConstraint("query_id", "kind", "user_key", name="pk_feedback"),
        Index("ix_feedback_ref_at", "ref", "at"),
    )

    query_id: Mapped[str] = mapped_column(ForeignKey("queries.query_id", name="fk_feedback_query"))
    kind: Mapped[str] = mapped_column(String(16))
    user_key: Mapped[str] = mapped_column(String(255))
    env: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    value: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class FlagRow(Base):
    """A feature flag of one environment."""

    __tablename__ = "flags"

    env: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    percent: Mapped[float] = mapped_column(Float)
    conditions: Mapped[str] = mapped_column(Text)
    release: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(255))


class GateRunRow(Base):
    """One gate run (an eval or a load test) judging one release, with its JSON report."""

    __tablename__ = "gate_runs"
    __table_args__ = (Index("ix_gate_runs_ref_kind", "ref", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", name="fk_gate_runs_release"))
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    baseline_ref: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    env: Mapped[str] = mapped_column(String(32))
    passed: Mapped[bool] = mapped_column(Boolean)
    forced: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)
    report: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))


class OutputCacheRow(Base):
    """A cached generation (an eval output), keyed by the sha256 of what produced it."""

    __tablename__ = "output_cache"
    __table_args__ = (Index("ix_output_cache_ref", "ref"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RolloutRow(Base):
    """One rollout: its spec, candidate and stable release, and the state machine's
    state (JSON). ``active_env`` is the environment while the rollout is not finished
    and NULL after: its unique constraint keeps one active rollout per environment."""

    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("active_env", name="uq_rollouts_active_env"),
        Index("ix_rollouts_env", "env", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    strategy: Mapped[str] = mapped_column(String(16))
    spec: Mapped[str] = mapped_column(Text)
    candidate: Mapped[str] = mapped_column(String(REF_LENGTH))
    stable: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    phase: Mapped[str] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer)
    step_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paused: Mapped[bool] = mapped_column(Boolean)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    abort_reason: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    active_env: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revision: Mapped[int] = mapped_column(Integer)


class RolloutIntentRow(Base):
    """What a person or an alert asked of a rollout (promote, pause, abort, ...), kept
    until the controller applies it; ``dedupe_key`` makes a repeated alert a no-op."""

    __tablename__ = "rollout_intents"
    __table_args__ = (
        UniqueConstraint("rollout_id", "dedupe_key", name="uq_rollout_intents_dedupe"),
        Index("ix_rollout_intents_rollout", "rollout_id", "consumed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", name="fk_rollout_intents_rollout")
    )
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(Text)


class AnalysisMeasurementRow(Base):
    """One measurement of one metric of one analysis run of a rollout."""

    __tablename__ = "analysis_measurements"
    __table_args__ = (Index("ix_analysis_measurements_rollout_run", "rollout_id", "run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", name="fk_analysis_measurements_rollout")
    )
    run: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(63))
    phase: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class GatewayRow(Base):
    """A gateway of one environment, announced with the URL other processes reach it at
    and renewed by its heartbeat; removed when it stops cleanly."""

    __tablename__ = "gateways"

    env: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    """Unique per process: ``host-pid-random``."""
    url: Mapped[str] = mapped_column(String(1024))
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    policy_revision: Mapped[int | None] = mapped_column(Integer)
    """Revision of the traffic policy it routed by at its last heartbeat."""
    recent_requests: Mapped[int] = mapped_column(Integer)
    """Requests it answered over the minute before its last heartbeat."""


class SecretRow(Base):
    """A secret every process of the registry shares (``feedback``: the key of the
    feedback tokens), created at random by the first process that needs it."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LeaseRow(Base):
    """A named lease (``controller/ENV``): who holds it until when, and its fencing token,
    which grows by one whenever the lease changes hands."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApprovalRow(Base):
    """A promotion into an environment that waits for a person: who asked, and who
    approved or rejected it, when and why."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_env_state", "env", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(32))
    """The environment the release is to be promoted into."""
    source_env: Mapped[str | None] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    state: Mapped[str] = mapped_column(String(16))
    """``pending``, ``approved`` or ``rejected``."""
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    pipeline_run: Mapped[int | None] = mapped_column(Integer)
    """The pipeline run waiting on it, if any."""


class PipelineRunRow(Base):
    """One ``llmship pipeline run``: its candidate, its state and each stage (JSON)."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (Index("ix_pipeline_runs_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate: Mapped[str] = mapped_column(Text)
    """The candidate spec as given (a path)."""
    ref: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    """The release it became, once released."""
    target_env: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    """``running``, ``waiting`` (on a person), ``succeeded``, ``failed`` or ``error``."""
    failed_stage: Mapped[str | None] = mapped_column(String(32))
    stages: Mapped[str] = mapped_column(Text)
    """JSON list of the stages: name, state, started, finished, detail."""
    options: Mapped[str] = mapped_column(Text)
    """JSON of the options it was started with, for ``--resume``."""
    report_dir: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlertActionRow(Base):
    """What an alert did to an environment's production release after a promotion
    (rolled back, or only noted); the unique key makes a repeated alert a no-op."""

    __tablename__ = "alert_actions"
    __table_args__ = (UniqueConstraint("env", "dedupe_key", name="uq_alert_actions_dedupe"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(128))
    """The alert's fingerprint and start time."""
    alertname: Mapped[str] = mapped_column(String(255))
    ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    """The production release the alert was about."""
    action: Mapped[str] = mapped_column(String(16))
    """``rollback``, ``notify``, or ``ignored`` (it changed nothing)."""
    outcome: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
