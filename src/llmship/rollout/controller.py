"""The rollout controller: runs every active rollout of an environment.

Each pass reconciles each rollout as a short script (after Argo Rollouts'
``rolloutCanary``):

1. **outbox**: carry out the actions a previous pass persisted but may not have
   finished (it was killed, or the registry refused);
2. **intents**: apply what people and alerts asked for (promote, pause, resume,
   abort, retry), oldest first; one that does not apply is recorded as rejected;
3. **analysis**: take every measurement that is due (``run_measurement`` with the
   providers), store it, and turn a run's verdict into an event;
4. **tick**: timers, the candidate's readiness (an endpoint in the registry) and
   the progress deadline.

Every transition is saved, with its actions as the outbox and one event per
transition, *before* any action touches traffic; the saved actions are then
carried out and cleared. A controller killed at any point and started again
therefore resumes at the same step with the same weights: a step is neither
skipped nor repeated, and every action is idempotent.

Several controllers of one environment may run at once (on one host with SQLite,
on many with PostgreSQL): each pass starts by acquiring or renewing the lease
``controller/ENV`` in the registry, only its holder reconciles, and every write
of its pass goes through ``Registry.fenced`` with the lease's token, so a holder
that was paused or cut off while another took over writes nothing when it wakes
(``FencedError``) and stands by. :meth:`Controller.run` renews the lease from a
thread every third of its duration, and a standby tries for it every quarter of
an interval: with the default lease of 1.5 intervals, a standby leads at most
1.5 + 0.25 = 1.75 intervals after the leader's last renewal (it was killed, or cut
off), within the two intervals promised. A clean stop releases the lease, so a
standby leads within a quarter of an interval.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from llmship.analysis.providers import Providers
from llmship.analysis.stats import StatsSource
from llmship.errors import ConflictError, FencedError, LlmshipError
from llmship.registry import Registry, RolloutIntent, RolloutRecord
from llmship.registry.records import Lease
from llmship.rollout.actions import execute
from llmship.rollout.events import AnalysisResult, RolloutEvent, Tick, TransitionError, intent_event
from llmship.rollout.machine import describe, step
from llmship.rollout.measurements import DEFAULT_WINDOW_S, Measurer
from llmship.rollout.records import state_of, update_of
from llmship.rollout.state import RolloutPhase, RolloutState

__all__ = [
    "LEASE_INTERVALS",
    "Controller",
    "default_holder",
    "lease_name",
]

log = logging.getLogger(__name__)

LEASE_INTERVALS = 1.5
"""The lease lasts this many reconcile intervals by default (``--lease-duration``)."""
RENEWALS_PER_LEASE = 3
"""The leader renews its lease this many times per lease duration (every 0.5 interval
by default): two renewals in a row may fail before it loses the lease."""
POLLS_PER_INTERVAL = 4
"""A standby tries for the lease this many times per interval (every 0.25 interval)."""


def lease_name(env: str | None) -> str:
    """The lease the controllers of ``env`` share: ``controller/ENV``."""
    return f"controller/{env}" if env is not None else "controller/*"


def default_holder() -> str:
    """Who this process is, as a lease holder: ``HOST:PID``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Current:
    """One rollout as this pass knows it: the stored record and the machine's state."""

    record: RolloutRecord
    state: RolloutState


class Controller:
    """Reconciles the active rollouts of one environment (or of all, ``env=None``).

    ``clock`` (seconds, ``time.time`` by default) drives every timer; give the
    registry a matching clock in tests. ``providers`` measure the analysis
    metrics (``Providers(stats=GatewayStats(...))`` in production); ``stats``
    alone builds them. ``endpoint_max_age`` is how fresh a candidate's endpoint
    heartbeat must be for the candidate to count as ready (None: any endpoint).

    Only the holder of the lease ``controller/ENV`` reconciles: ``holder`` names this
    controller in it (``HOST:PID`` by default), ``lease_duration`` is how long it
    lasts unrenewed (default: 1.5 intervals of :meth:`run`, 1.5 s before it runs).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        env: str | None = None,
        providers: Providers | None = None,
        stats: StatsSource | None = None,
        clock: Callable[[], float] = time.time,
        actor: str = "controller",
        endpoint_max_age: float | None = 30.0,
        window_s: float = DEFAULT_WINDOW_S,
        holder: str | None = None,
        lease_duration: float | None = None,
    ):
        self.registry = registry
        self.env = env
        self._providers = providers
        self._stats = stats
        self._own_providers = providers is None
        self.clock = clock
        self.actor = actor
        self.endpoint_max_age = endpoint_max_age
        self.window_s = window_s
        self.holder = holder or default_holder()
        self.lease_name = lease_name(env)
        self._lease_given = lease_duration is not None
        self.lease_duration = lease_duration if lease_duration is not None else LEASE_INTERVALS
        self._view = registry
        """The registry this pass writes through: fenced with the lease's token."""
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        """The lease while this controller holds it, as last acquired or renewed."""
        self._seen_leader: tuple[str, int] | None = None
        """The other leader last logged, so that standing by is logged once per leader."""
        self._registry_down = False

    @property
    def providers(self) -> Providers:
        """The metric providers (made on first use from ``stats`` when none were given)."""
        if self._providers is None:
            self._providers = Providers(stats=self._stats)
        return self._providers

    @property
    def lease(self) -> Lease | None:
        """The lease while this controller leads, else None (it stands by)."""
        with self._lock:
            return self._lease

    def close(self) -> None:
        """Close the providers this controller made."""
        if self._own_providers and self._providers is not None:
            self._providers.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------

    def run(self, interval: float, stop: threading.Event | None = None) -> None:
        """Reconcile every ``interval`` seconds while leading, until ``stop`` is set;
        then release the lease.

        While it leads, a thread renews the lease every third of its duration, so
        a long pass does not lose it; while it stands by, it tries for the lease
        every quarter of ``interval``.
        """
        stop = stop or threading.Event()
        if not self._lease_given:
            self.lease_duration = LEASE_INTERVALS * interval
        renewing = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until,
            args=(renewing, self.lease_duration / RENEWALS_PER_LEASE),
            name=f"lease {self.lease_name}",
            daemon=True,
        )
        renewer.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.run_once()
                period = interval if self.lease is not None else interval / POLLS_PER_INTERVAL
                stop.wait(max(0.0, period - (time.monotonic() - started)))
        finally:
            renewing.set()
            renewer.join(timeout=10)
            self.release()

    def _renew_until(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            if self.lease is not None:
                self.claim()

    def release(self) -> None:
        """Give the lease up (a clean stop), so that a standby leads at once."""
        with self._lock:
            held, self._lease = self._lease, None
        if held is None:
            return
        try:
            if self.registry.release_lease(self.lease_name, self.holder):
                log.info("released the lease %s (token %d)", self.lease_name, held.token)
        except LlmshipError as exc:
            log.warning("cannot release the lease %s: %s", self.lease_name, exc.message)

    def claim(self) -> Lease | None:
        """Acquire or renew the lease; it, or None when another controller leads (or the
        registry cannot be reached). Logs each change of leader once."""
        try:
            lease = self.registry.acquire_lease(
                self.lease_name, self.holder, duration_s=self.lease_duration
            )
            other = self.registry.get_lease(self.lease_name) if lease is None else None
        except LlmshipError as exc:
            if not self._registry_down:
                log.warning("cannot reach the registry for the lease: %s", exc.message)
            self._registry_down = True
            return None
        self._registry_down = False
        with self._lock:
            before, self._lease = self._lease, lease
            if lease is not None and (before is None or before.token != lease.token):
                log.info(
                    "leading %s: holding the lease %s (token %d) as %s",
                    self.env or "every environment",
                    self.lease_name,
                    lease.token,
                    self.holder,
                )
            if lease is None and other is not None:
                leader = (other.holder, other.token)
                if before is not None:
                    log.warning(
                        "lost the lease %s to %s (token %d); standing by",
                        self.lease_name,
                        other.holder,
                        other.token,
                    )
                elif self._seen_leader != leader:
                    log.info(
                        "standby: %s leads (lease %s, token %d)",
                        other.holder,
                        self.lease_name,
                        other.token,
                    )
                self._seen_leader = leader
        return lease

    def _fenced_out(self, exc: FencedError) -> None:
        """A write of this pass was refused: another controller leads now."""
        with self._lock:
            lost, self._lease = self._lease, None
        if lost is not None:
            log.warning("lost the lease %s: %s; standing by", self.lease_name, exc.message)

    def run_once(self) -> list[RolloutState]:
        """One pass over every rollout that needs one, if this controller holds the
        lease (it acquires or renews it first); the states it left them in.

        A failure with one rollout is logged and does not stop the others; a write
        refused because another controller took the lease ends the pass.
        """
        lease = self.claim()
        if lease is None:
            return []
        self._view = self.registry.fenced(lease.name, lease.token)
        try:
            return self._pass()
        except FencedError as exc:
            self._fenced_out(exc)
            return []
        finally:
            self._view = self.registry

    def _pass(self) -> list[RolloutState]:
        try:
            records = self._view.rollouts_to_reconcile(self.env)
        except LlmshipError as exc:
            log.warning("cannot list the rollouts: %s", exc.message)
            return []
        states = []
        for record in records:
            try:
                states.append(self.reconcile(record.id))
            except FencedError:
                raise
            except LlmshipError as exc:
                log.warning("rollout %s (id %d): %s", record.name, record.id, exc.message)
            except Exception:
                log.exception("rollout %s (id %d): reconcile failed", record.name, record.id)
        return states

    def reconcile(self, rollout_id: int) -> RolloutState:
        """One pass over one rollout (outbox, intents, analysis, tick); its new state.

        Inside :meth:`run_once` every write is fenced by the lease; called alone, it
        writes as the only controller would."""
        record = self._view.get_rollout(rollout_id)
        current = _Current(record, state_of(record))
        failing = self._flush(current)
        for intent in self._view.pending_rollout_intents(rollout_id):
            self._intent(current, intent)
            failing = self._flush(current)
        if current.state.phase.is_terminal:
            return current.state
        for result in self._analysis(current):
            self._apply(current, result)
            failing = self._flush(current)
        if current.state.phase.is_terminal:
            return current.state
        self._apply(current, Tick(ready=self._ready(current.state), failing=failing))
        self._flush(current)
        return current.state

    # -- transitions ---------------------------------------------------------------------

    def _intent(self, current: _Current, intent: RolloutIntent) -> None:
        try:
            event = intent_event(intent.kind, actor=intent.actor, reason=intent.reason)
            self._apply(current, event, intent=intent)
        except ConflictError as exc:
            if isinstance(exc, FencedError) or (
                not isinstance(exc, TransitionError) and exc.param != "env"
            ):
                raise  # someone saved the rollout meanwhile: the next pass reads it again
            self._reject(current, intent, exc.message)
        except ValueError as exc:
            self._reject(current, intent, str(exc))

    def _reject(self, current: _Current, intent: RolloutIntent, why: str) -> None:
        """Record that ``intent`` does not apply (e.g. a retry while another rollout runs)."""
        log.info(
            "rollout %s: %s by %s not applied: %s",
            current.state.name,
            intent.kind,
            intent.actor,
            why,
        )
        self._view.reject_rollout_intent(intent.id, why, actor=self.actor)

    def _apply(
        self, current: _Current, event: RolloutEvent, *, intent: RolloutIntent | None = None
    ) -> None:
        """Step the machine, then save the new state with its actions as the outbox."""
        before = current.state
        now = self.clock()
        after, actions = step(before, event, now)
        if after == before and not after.notes and not actions and intent is None:
            return
        aborted = after.phase is RolloutPhase.ABORTED and before.phase is not RolloutPhase.ABORTED
        # An abort supersedes whatever was still to do: only its own actions remain.
        pending = tuple(actions) if aborted else (*before.pending, *actions)
        after = replace(after, pending=pending)
        record = self._view.save_rollout(
            before.rollout_id,
            update_of(after),
            expected_revision=current.record.revision,
            actor=self.actor,
            notes=[(n.kind, n.message, n.actor) for n in after.notes],
            consume_intent=intent.id if intent is not None else None,
        )
        current.record, current.state = record, after
        for n in after.notes:
            log.info(
                "rollout %s (id %d) %s: %s [%s; weight %g%%; candidate %s; %s]",
                after.name,
                after.rollout_id,
                after.env,
                n.message,
                describe(after),
                after.weight,
                after.candidate,
                after.phase.value,
            )

    def _flush(self, current: _Current) -> str | None:
        """Carry out the saved actions in order and clear them; why they failed, if so."""
        pending = current.state.pending
        if not pending:
            return None
        done = 0
        failure = None
        for action in pending:
            try:
                changed = execute(self._view, current.state, action)
            except FencedError:
                raise
            except LlmshipError as exc:
                failure = f"{action.describe()} failed: {exc.message}"
                break
            if changed:
                log.info(
                    "rollout %s (id %d) %s: did %s",
                    current.state.name,
                    current.state.rollout_id,
                    current.state.env,
                    action.describe(),
                )
            done += 1
        if failure is not None:
            log.warning(
                "rollout %s (id %d): %s", current.state.name, current.state.rollout_id, failure
            )
        if done:
            state = replace(current.state, pending=pending[done:], notes=())
            record = self._view.save_rollout(
                state.rollout_id,
                update_of(state),
                expected_revision=current.record.revision,
                actor=self.actor,
            )
            current.record, current.state = record, state
        return failure

    def _ready(self, state: RolloutState) -> bool:
        endpoints = self._view.list_endpoints(state.env, max_age_s=self.endpoint_max_age)
        return any(e.ref == state.candidate for e in endpoints)

    # -- analysis --------------------------------------------------------------------------

    def _analysis(self, current: _Current) -> list[AnalysisResult]:
        """Take every due measurement of the live runs; the verdicts of runs now decided."""
        measurer = Measurer(
            self._view, providers=lambda: self.providers, window_s=self.window_s, clock=self.clock
        )
        return measurer.results(current.state)
