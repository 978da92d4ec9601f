"""The registry's methods for the gateway: traffic policies, endpoints, queries,
feedback and flags. They are methods of ``Registry`` (which inherits them); the SQL
lives in ``_traffic.py``, ``_endpoints.py``, ``_feedback.py`` and ``_flags.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from llmship.errors import ConflictError, InvalidRequestError
from llmship.flags.model import Flag
from llmship.registry import _endpoints, _feedback, _flags, _guard, _traffic
from llmship.registry import _queries as q
from llmship.registry._base import RETRIES, Store, check_env, logger, required_reason
from llmship.registry._hosts import FORGET_AFTER_S, notify_change
from llmship.registry.records import Endpoint, FeedbackRecord, FeedbackSummary, QueryRecord
from llmship.routing.policy import TrafficPolicy


class GatewayMethods(Store):
    """Traffic, endpoints, queries, feedback and flags (part of ``Registry``)."""

    # -- traffic -------------------------------------------------------------

    def get_traffic(self, env: str) -> TrafficPolicy:
        """The traffic policy of ``env``; ``stable`` is where its ``production`` alias points.

        An environment without a stored policy has revision 0 and sends
        everything to stable.
        """
        check_env(env)
        with self._read() as session:
            return _traffic.load(session, env)[0]

    def set_traffic(
        self,
        env: str,
        policy: TrafficPolicy,
        *,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
        force: bool = False,
    ) -> TrafficPolicy:
        """Store ``policy`` as the policy of ``env`` (revision + 1) and return it.

        Every release it names must be registered (an alias is resolved to the
        release it points at); its ``stable`` is ignored, since it is always the
        ``production`` alias. With ``expected_revision``, a policy changed
        meanwhile by someone else is a ConflictError (optimistic concurrency).
        A release whose share of the traffic rises to a guarded one (all of it, or
        above ``guard_above``) needs the gates ``llmship.yaml`` requires (GateError),
        unless ``force`` with a reason (``registry/_guard.py``).
        """
        check_env(env)
        reason = required_reason(reason, "changing traffic")
        replace(policy, env=env, stable=None).validate()

        def _change(session: Session, current: TrafficPolicy) -> TrafficPolicy:
            if expected_revision is not None and expected_revision != current.revision:
                raise ConflictError(
                    f"the traffic policy of {env} is at revision {current.revision}, not "
                    f"{expected_revision}: someone changed it meanwhile; read it again",
                    param="revision",
                )
            return _traffic.canonical(session, policy, env)

        return self._change_traffic(
            env, _change, "traffic.changed", actor=actor, reason=reason, force=force
        )

    def promote_preview(
        self, env: str, *, actor: str, reason: str, force: bool = False
    ) -> TrafficPolicy:
        """Make the preview release stable, in one transaction.

        The ``production`` alias moves to the preview (recorded in its history
        with ``actor`` and ``reason``), the preview is cleared, the revision goes
        up by one and a ``traffic.promoted`` event is recorded. A canary of the
        same release ends with it. InvalidRequestError when no preview is set.
        The move passes the promotion guard (GateError unless the preview has the
        gates ``llmship.yaml`` requires, or ``force`` with a reason).
        """
        check_env(env)
        reason = required_reason(reason, "promoting the preview")

        def _change(session: Session, current: TrafficPolicy) -> TrafficPolicy:
            if current.preview is None:
                raise InvalidRequestError(
                    f"no preview is set in {env}: set one first with "
                    "`llmship traffic set --preview NAME@VERSION`",
                    param="preview",
                )
            target = q.resolve(session, current.preview, env)
            move = self._move_alias_in(
                session, env, _traffic.STABLE_ALIAS, target, actor=actor, reason=reason, force=force
            )
            if current.stable != target.ref:  # moved now: its reason says if it was forced
                recorded[0] = move.reason
            promoted = replace(current, stable=target.ref, preview=None)
            if promoted.canary == target.ref:
                promoted = replace(promoted, canary=None, canary_weight=0.0)
            return promoted

        recorded = [reason]  # the reason the move records ([forced] when forced)
        return self._change_traffic(env, _change, "traffic.promoted", actor=actor, reason=recorded)

    def reset_traffic(self, env: str, *, actor: str, reason: str) -> TrafficPolicy:
        """Send everything to stable: clear the canary, preview, experiment and shadow."""
        check_env(env)
        reason = required_reason(reason, "resetting traffic")

        def _change(_session: Session, current: TrafficPolicy) -> TrafficPolicy:
            return TrafficPolicy(env=env, stable=current.stable, revision=current.revision)

        return self._change_traffic(env, _change, "traffic.reset", actor=actor, reason=reason)

    def _change_traffic(
        self,
        env: str,
        change: Callable[[Session, TrafficPolicy], TrafficPolicy],
        kind: str,
        *,
        actor: str,
        reason: str | list[str],
        force: bool = False,
    ) -> TrafficPolicy:
        """Read the policy (locked), apply ``change``, pass the promotion guard on the
        shares it raises, store it as the next revision. ``reason`` may be a one-item
        list ``change`` fills in (the reason its alias move recorded)."""
        for attempt in range(RETRIES):
            try:
                with self._write() as session:
                    current, row = _traffic.load(session, env, for_update=True)
                    changed = change(session, current)
                    why = reason[0] if isinstance(reason, list) else reason
                    flags = _flags.all_flags(session, env)
                    why = self._admit(
                        session,
                        env,
                        force=force,
                        reason=why,
                        actor=actor,
                        before=_guard.shares(current, flags),
                        after=_guard.shares(changed, flags),
                    )
                    stable = q.alias_target(session, env, _traffic.STABLE_ALIAS)
                    new = replace(
                        changed,
                        env=env,
                        stable=f"{stable.name}@{stable.version}" if stable else None,
                        revision=current.revision + 1,
                        extra={},
                    )
                    new.validate()
                    _traffic.store(session, row, new, actor=actor, now=self._now())
                    summary = new.summary()
                    self._add_event(
                        session,
                        kind=kind,
                        subject=env,
                        message=f"{env} traffic (revision {new.revision}): {summary} ({why})",
                        actor=actor,
                        data={**new.to_dict(), "reason": why},
                    )
                    notify_change(session, env)
                logger.info("%s %s revision %d: %s by %s", kind, env, new.revision, summary, actor)
                return new
            except sa_exc.IntegrityError:
                # Two writers created the first policy (or alias) of env at once.
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints -----------------------------------------------------------

    def register_endpoint(self, env: str, ref: str, url: str, *, pid: int | None) -> Endpoint:
        """Announce a model server of ``ref`` at ``url`` (again: renews its heartbeat).

        ``started_at`` is kept while the same ``pid`` announces itself again.
        """
        check_env(env)
        _endpoints.check(ref, url)
        with self._write() as session:
            now = self._now()
            endpoint = _endpoints.upsert(session, env, ref, url, pid=pid, now=now)
            if endpoint.started_at == now:  # a new server (not a renewal): route to it now
                notify_change(session, env)
                _endpoints.forget_stale(
                    session, env, before=now - timedelta(seconds=FORGET_AFTER_S)
                )
            return endpoint

    def heartbeat_endpoint(self, env: str, ref: str, url: str) -> None:
        """Renew an endpoint's heartbeat; NotFoundError when it is not registered."""
        with self._write() as session:
            _endpoints.heartbeat(session, env, ref, url, now=self._now())

    def remove_endpoint(self, env: str, ref: str, url: str) -> None:
        """Forget an endpoint; nothing happens when it is not registered."""
        with self._write() as session:
            if _endpoints.remove(session, env, ref, url):
                notify_change(session, env)

    def list_endpoints(self, env: str, *, max_age_s: float | None = None) -> list[Endpoint]:
        """The endpoints of ``env``, newest heartbeat first.

        With ``max_age_s``, only those whose heartbeat is at most that old.
        """
        with self._read() as session:
            return _endpoints.live(session, env, max_age_s=max_age_s, now=self._now())

    # -- queries and feedback ------------------------------------------------

    def record_queries(self, rows: Sequence[QueryRecord]) -> None:
        """Record which release answered each query, in few INSERTs.

        A query_id that is already recorded is skipped, so sending a batch
        twice is harmless.
        """
        for row in rows:
            _feedback.check_query(row)
        if not rows:
            return
        with self._write() as session:
            _feedback.insert_queries(session, rows)

    def get_query(self, query_id: str) -> QueryRecord:
        """The recorded query ``query_id``; NotFoundError when there is none."""
        with self._read() as session:
            return _feedback.to_query(_feedback.query_row(session, query_id))

    def add_feedback(
        self,
        query_id: str,
        *,
        rating: int | None = None,
        thumbs: str | None = None,
        comment: str | None = None,
        actor: str | None = None,
        user: str | None = None,
    ) -> list[FeedbackRecord]:
        """Record a rating (1..5) and/or a thumbs (up/down) on a query by one user.

        The feedback is attributed to the environment and release that answered
        the query. The user is ``user`` when given, else the query's user key; with
        neither, the answer stands for its user. A second rating (or thumbs) by the
        same user on the same query replaces the first; a rating and a thumbs are
        kept side by side. NotFoundError for a query id that is not recorded.
        """
        values = _feedback.feedback_values(rating, thumbs, comment)
        with self._write() as session:
            query = _feedback.query_row(session, query_id)
            return _feedback.upsert_feedback(
                session,
                query,
                values,
                user=_feedback.rater(query, user),
                comment=comment,
                actor=actor,
                now=self._now(),
            )

    def feedback_secret(self) -> bytes:
        """The key of the gateways' feedback tokens: one random secret kept in the
        registry (created by the first gateway that asks), so every gateway of the
        registry, on any host, issues and checks the same tokens."""
        with self._write() as session:
            return _feedback.shared_secret(session, "feedback", now=self._now()).encode()

    def feedback_summary(
        self, env: str | None = None, ref: str | None = None, *, since: datetime | None = None
    ) -> list[FeedbackSummary]:
        """Feedback per release (of ``env``, of ``ref``, since ``since``), by release."""
        normal = _feedback.normal_ref(ref) if ref is not None else None
        with self._read() as session:
            return _feedback.summary(session, env, normal, since)

    def list_feedback(
        self, env: str, ref: str, *, since: datetime | None = None
    ) -> list[FeedbackRecord]:
        """Each rating and thumbs given to ``ref``'s answers in ``env``, oldest first."""
        normal = _feedback.normal_ref(ref)
        with self._read() as session:
            return _feedback.listing(session, env, normal, since)

    # -- flags ---------------------------------------------------------------

    def set_flag(
        self, env: str, flag: Flag, *, actor: str, force: bool = False, reason: str = ""
    ) -> Flag:
        """Create or replace a feature flag of ``env``; its release must be registered.

        A flag that raises its release's share of the traffic to a guarded one (all of
        it, or above ``guard_above``) needs the gates ``llmship.yaml`` requires
        (GateError), unless ``force`` with a ``reason`` (``registry/_guard.py``).
        """
        check_env(env)
        flag.validate()
        with self._write() as session:
            if flag.release is not None:
                release = q.canonical_ref(session, flag.release, env, role=f"flag {flag.name}")
                flag = replace(flag, release=release)
            was = next((f for f in _flags.all_flags(session, env) if f.name == flag.name), None)
            why = self._admit_flags(
                session, env, flag, was=was, force=force, reason=reason, actor=actor
            )
            _flags.upsert(session, env, flag, actor=actor, now=self._now())
            notify_change(session, env)
            self._add_event(
                session,
                kind="flag.changed",
                subject=f"{env}/{flag.name}",
                message=f"{env}/{flag.name}: {_flags.describe(flag)}"
                + (f" ({why})" if why else ""),
                actor=actor,
                data={**flag.to_dict(), **({"reason": why} if why else {})},
            )
        logger.info("flag %s/%s: %s by %s", env, flag.name, _flags.describe(flag), actor)
        return flag

    def toggle_flag(self, env: str, name: str, *, actor: str) -> Flag:
        """Flip the flag ``name`` of ``env`` (or its other spelling, ``new-model`` /
        ``new_model``, when only that one exists); one that does not exist is created on.
        Atomic: concurrent toggles each flip once."""
        check_env(env)
        with self._write() as session:
            flag = _flags.flip(session, env, name, actor=actor, now=self._now())
            if flag.enabled:  # off before: on now, it may route a guarded share
                self._admit_flags(session, env, flag, was=None, force=False, reason="", actor=actor)
            notify_change(session, env)
            self._add_event(
                session,
                kind="flag.changed",
                subject=f"{env}/{flag.name}",
                message=f"{env}/{flag.name}: {_flags.describe(flag)} (toggled)",
                actor=actor,
                data=flag.to_dict(),
            )
        logger.info("flag %s/%s toggled: %s by %s", env, flag.name, _flags.describe(flag), actor)
        return flag

    def _admit_flags(
        self,
        session: Session,
        env: str,
        flag: Flag,
        *,
        was: Flag | None,
        force: bool,
        reason: str,
        actor: str,
    ) -> str:
        """The promotion guard on ``flag`` (``was`` before the change) in ``env``; the
        reason to record (``[forced] ...`` when forced)."""
        if flag.release is None or not flag.enabled:
            return reason
        policy = _traffic.load(session, env)[0]
        others = [f for f in _flags.all_flags(session, env) if f.name != flag.name]
        return self._admit(
            session,
            env,
            force=force,
            reason=reason,
            actor=actor,
            before=_guard.shares(policy, [*others, *([was] if was else [])]),
            after=_guard.shares(policy, [*others, flag]),
        )

    def get_flag(self, env: str, name: str) -> Flag:
        """The flag ``name`` of ``env``; NotFoundError lists the flags there."""
        with self._read() as session:
            return _flags.to_flag(_flags.flag_row(session, env, name))

    def list_flags(self, env: str) -> list[Flag]:
        """The flags of ``env``, by name."""
        with self._read() as session:
            return _flags.all_flags(session, env)

    def delete_flag(self, env: str, name: str, *, actor: str) -> None:
        """Delete the flag ``name`` of ``env``; NotFoundError when there is none."""
        with self._write() as session:
            row = _flags.flag_row(session, env, name)
            data = _flags.to_flag(row).to_dict()
            session.delete(row)
            notify_change(session, env)
            self._add_event(
                session,
                kind="flag.deleted",
                subject=f"{env}/{name}",
                message=f"{env}/{name}: deleted",
                actor=actor,
                data=data,
            )
        logger.info("flag %s/%s deleted by %s", env, name, actor)
