"""The registry: releases, aliases with their history, events, and what the gateway
shares with the rest of llmship (traffic policies, endpoints, queries, feedback, flags).

It is the single source of truth of llmship. Every public method runs in its own
transaction and returns frozen records (``records.py``). Writes are safe when
several processes share the database: SQLite writers queue on ``BEGIN
IMMEDIATE`` with a busy timeout, PostgreSQL writers lock the alias row they move,
and a lost race on a unique key is read back and compared.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from llmship.errors import (
    ConflictError,
    InvalidRequestError,
    RegistryUnavailableError,
    SpecError,
)
from llmship.registry import _feedback
from llmship.registry import _queries as q
from llmship.registry._alert_actions import AlertActionMethods
from llmship.registry._approvals import ApprovalMethods
from llmship.registry._base import (
    RETRIES,
    Clock,
    check_env,
    first_line,
    logger,
    required_reason,
    utc_now,
)
from llmship.registry._engine import create_registry_engine, parse_url, safe_url, upgrade
from llmship.registry._gate_runs import GateMethods
from llmship.registry._gateway import GatewayMethods
from llmship.registry._hosts import HostMethods, notify_change
from llmship.registry._leases import LeaseMethods
from llmship.registry._pipeline_runs import PipelineRunMethods
from llmship.registry._rollouts import RolloutMethods
from llmship.registry.records import (
    AliasMove,
    AliasRecord,
    Event,
    FeedbackRecord,
    ReleaseRecord,
)
from llmship.registry.tables import AliasRow, EventRow, ReleaseRow
from llmship.release.promotion_guard import PromotionGuard
from llmship.release.semver import Version
from llmship.release.spec import ReleaseSpec
from llmship.release.weights import with_sha256

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
FEEDBACK_KINDS = ("rating", "thumbs")
"""The kinds of feedback: a rating (1-5) and a thumbs (1 up, 0 down)."""


class Registry(
    GatewayMethods,
    HostMethods,
    GateMethods,
    RolloutMethods,
    LeaseMethods,
    ApprovalMethods,
    PipelineRunMethods,
    AlertActionMethods,
):
    """Releases, aliases and events in one SQL database (SQLite or PostgreSQL), the
    gateway's traffic policies, endpoints, queries, feedback and flags, the
    release gates' runs and output cache, and rollouts with their intents and
    analysis measurements.

    Open it with :meth:`open`, close it with :meth:`close` (or use ``with``).
    One instance may be shared by threads.
    """

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        home: str | Path | None = None,
        clock: Clock | None = None,
        guard: PromotionGuard | None = None,
    ) -> Registry:
        """Open the registry at ``url``, creating or migrating its schema as needed.

        A SQLite file's directory is created. ``clock`` (default: UTC now) stamps
        every record, so tests can fix time. ``guard`` is the promotion guard's rules
        its writes enforce (default: ``llmship.yaml``'s, read on each guarded write;
        the attribute ``guard`` changes them later).
        """
        parsed = parse_url(url)
        engine = create_registry_engine(parsed)
        try:
            upgrade(engine)
        except sa_exc.DBAPIError as exc:
            engine.dispose()
            raise RegistryUnavailableError(
                f"cannot open the registry at {safe_url(parsed)}: {first_line(exc)}"
            ) from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(
            engine,
            parsed,
            home=Path(home) if home is not None else None,
            clock=clock or utc_now,
            guard=guard,
        )

    def close(self) -> None:
        """Release every database connection."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    # -- releases ------------------------------------------------------------

    def register(self, spec: ReleaseSpec, *, actor: str) -> tuple[ReleaseRecord, bool]:
        """Record ``spec`` as an immutable release; ``(record, created)``.

        The weights' sha256 is filled first. Registering the same name and
        version again with identical content returns the existing record
        (``created`` False); with different content it is a ``ConflictError``.
        """
        spec = with_sha256(spec)
        digest = spec.digest()
        try:
            record, created = self._insert_release(spec, digest, actor)
        except sa_exc.IntegrityError:
            # Another process registered the same name and version first.
            with self._read() as session:
                row = q.release_row(session, spec.name, spec.version)
                if row is None:
                    raise
                record, created = q.to_release(row), False
        if not created and record.digest != digest:
            raise ConflictError(_conflict_message(record.spec, spec), param="version")
        if created:
            logger.info("registered %s (digest %s) by %s", record.ref, digest[:12], actor)
        return record, created

    def _insert_release(
        self, spec: ReleaseSpec, digest: str, actor: str
    ) -> tuple[ReleaseRecord, bool]:
        with self._write() as session:
            existing = q.release_row(session, spec.name, spec.version)
            if existing is not None:
                return q.to_release(existing), False
            now = self._now()
            row = ReleaseRow(
                name=spec.name,
                version=spec.version,
                backend=spec.backend,
                spec=json.dumps(spec.to_dict(), sort_keys=True),
                digest=digest,
                created_at=now,
                created_by=actor,
            )
            session.add(row)
            session.flush()
            self._add_event(
                session,
                kind="release.registered",
                subject=spec.ref,
                message=f"registered {spec.ref}",
                actor=actor,
                data={"digest": digest, "backend": spec.backend, "sha256": spec.model.sha256},
            )
            return q.to_release(row), True

    def get(self, name: str, version: str) -> ReleaseRecord:
        """The release ``name@version``; ``NotFoundError`` lists the known versions."""
        with self._read() as session:
            return q.get_release(session, name, version.removeprefix("v"))

    def resolve(self, ref: str, *, env: str) -> ReleaseRecord:
        """The release ``ref`` names: ``NAME@VERSION``, or an alias of ``env``."""
        with self._read() as session:
            return q.resolve(session, ref, env)

    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]:
        """Every release (or every version of ``name``): by name, newest version first."""
        with self._read() as session:
            stmt = select(ReleaseRow)
            if name is not None:
                stmt = stmt.where(ReleaseRow.name == name)
            records = [q.to_release(row) for row in session.scalars(stmt)]
        records.sort(key=lambda r: Version.parse(r.version), reverse=True)
        records.sort(key=lambda r: r.name)
        return records

    def is_empty(self) -> bool:
        """True when no release is registered."""
        with self._read() as session:
            return session.scalar(select(func.count()).select_from(ReleaseRow)) == 0

    # -- aliases -------------------------------------------------------------

    def set_alias(
        self, env: str, alias: str, ref: str, *, actor: str, reason: str, force: bool = False
    ) -> AliasMove:
        """Point ``alias`` of ``env`` at the release ``ref`` names; the move is recorded.

        ``ref`` is ``NAME@VERSION`` or another alias of ``env``. Moving an alias
        to where it already points records nothing and returns its last move.
        ``production`` takes a release only with the passing gates ``llmship.yaml``
        requires for ``env`` (GateError, 409), unless it served there before (a
        rollback) or is the candidate of the rollout running there; ``force`` (with a
        reason) overrides, recorded (``registry/_guard.py``).
        """
        check_env(env)
        _check_alias(alias)
        reason = required_reason(reason, "moving an alias")
        for attempt in range(RETRIES):
            try:
                return self._move_alias(env, alias, ref, actor=actor, reason=reason, force=force)
            except sa_exc.IntegrityError:
                # Two writers created the same alias at once; the loser tries again.
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _move_alias(
        self, env: str, alias: str, ref: str, *, actor: str, reason: str, force: bool
    ) -> AliasMove:
        with self._write() as session:
            target = q.resolve(session, ref, env)
            move = self._move_alias_in(
                session, env, alias, target, actor=actor, reason=reason, force=force
            )
            notify_change(session, env)  # ``production`` is where stable traffic goes
            return move

    def get_alias(self, env: str, alias: str) -> ReleaseRecord | None:
        """The release ``alias`` of ``env`` points at, or None."""
        with self._read() as session:
            row = q.alias_target(session, env, alias)
            return q.to_release(row) if row is not None else None

    def list_aliases(self, env: str | None = None) -> list[AliasRecord]:
        """The aliases of ``env`` (or of every environment), by environment and name."""
        with self._read() as session:
            stmt = (
                select(AliasRow, ReleaseRow.name, ReleaseRow.version)
                .join(ReleaseRow, AliasRow.release_id == ReleaseRow.id)
                .order_by(AliasRow.env, AliasRow.alias)
            )
            if env is not None:
                stmt = stmt.where(AliasRow.env == env)
            return [
                AliasRecord(
                    env=row.env,
                    alias=row.alias,
                    ref=f"{name}@{version}",
                    release_id=row.release_id,
                    updated_at=row.updated_at,
                )
                for row, name, version in session.execute(stmt)
            ]

    def alias_history(self, env: str, alias: str) -> list[AliasMove]:
        """Every move of ``alias`` in ``env``, oldest first (empty for an unknown alias)."""
        with self._read() as session:
            return q.history(session, env, alias)

    # -- feedback, for the dashboard ---------------------------------------------

    def page_feedback(
        self,
        *,
        env: str | None = None,
        ref: str | None = None,
        kind: str | None = None,
        commented: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[FeedbackRecord], int]:
        """One page of the ratings and thumbs (of ``env``, of ``ref``, of ``kind``, only
        those with a comment when ``commented``), newest first, and how many match."""
        if limit < 1 or offset < 0:
            raise InvalidRequestError("limit must be at least 1, offset at least 0", param="limit")
        normal = _feedback.normal_ref(ref) if ref is not None else None
        if kind is not None and kind not in FEEDBACK_KINDS:
            raise InvalidRequestError(
                f"kind must be one of {', '.join(FEEDBACK_KINDS)}, not {kind!r}", param="kind"
            )
        with self._read() as session:
            return _feedback.page(
                session,
                env=env,
                ref=normal,
                kind=kind,
                commented=commented,
                limit=limit,
                offset=offset,
            )

    def feedback_points(
        self, env: str | None = None, *, since: datetime | None = None
    ) -> list[tuple[str, str, int, datetime]]:
        """``(ref, kind, value, at)`` of each rating and thumbs (of ``env``, since
        ``since``), oldest first: what feedback over time is drawn from."""
        with self._read() as session:
            return _feedback.points(session, env, since)

    # -- events --------------------------------------------------------------

    def record_event(
        self,
        kind: str,
        subject: str,
        message: str,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append an event, e.g. ``record_event("rollout.started", "dev/production", ...)``."""
        with self._write() as session:
            return self._add_event(
                session, kind=kind, subject=subject, message=message, actor=actor, data=data
            )

    def events(self, limit: int = 100, kind: str | None = None) -> list[Event]:
        """The latest ``limit`` events (of ``kind`` when given), newest first."""
        with self._read() as session:
            stmt = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
            if kind is not None:
                stmt = stmt.where(EventRow.kind == kind)
            return [q.to_event(row) for row in session.scalars(stmt)]


# -- checks and messages ----------------------------------------------------------


def _check_alias(alias: str) -> None:
    if not ALIAS_PATTERN.match(alias):
        raise SpecError(
            f"{alias!r} is not a valid alias name: use 1-63 lower-case letters, digits, "
            "'_' or '-', starting with a letter (e.g. production, canary)",
            param="alias",
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                found.append(f"{prefix}{key}")
        return found
    return [prefix.rstrip(".")] if old != new else []


def _conflict_message(old: ReleaseSpec, new: ReleaseSpec) -> str:
    before, after = old.to_dict(), new.to_dict()
    changed = []
    for field in _differences(before, after):
        inner = _differences(before.get(field), after.get(field))
        changed.append(f"{field} ({', '.join(inner)})" if inner and inner != [""] else field)
    version = Version.parse(old.version)
    bumped = Version(version.major, version.minor, version.patch + 1)
    return (
        f"{old.ref} is already registered with different content (changed: "
        f"{', '.join(changed) or 'nothing visible'}); a registered release never changes: "
        f"bump the version (e.g. {bumped}) and register that"
    )
