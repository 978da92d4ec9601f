"""What the gateway's Alertmanager webhook does with each alert, as blocking calls on
the registry (the admin router runs them in a thread).

A firing alert labelled ``action=rollback``:

- that names a running rollout (or its candidate) asks the controller to abort it,
  once per firing (:func:`llmship.gateway.alerts.abort_requests`);
- that names a release while no rollout runs is about production after a
  promotion: when it names the environment's production release, the
  environment's ``on_alert`` (``llmship.yaml``) says what happens: ``rollback``
  moves production back to the release before it, as ``llmship rollback`` does
  (:func:`llmship.rollout.ops.rollback_target`), the alert kept as the reason;
  ``notify`` only records it. An alert for a release that is not production, or
  while a rollout runs, changes nothing and is recorded as ``ignored``.

Each firing is recorded once (``Registry.record_alert_action``, keyed by the
alert's group key, fingerprint and start time): a repeated delivery changes
nothing. Resolved alerts do nothing. :func:`handle_webhook` says per alert what
was done::

    result = handle_webhook(registry, "prod", parse_webhook(body), rules=load_rules)
    result.to_dict()  # {"status": "ok", "aborted": [...], "repeated": 0, "alerts": [...]}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from llmship.environments import Environment
from llmship.errors import LlmshipError
from llmship.gateway.alerts import (
    ROLLBACK_ACTION,
    ReleaseAlert,
    WebhookPayload,
    abort_requests,
    dedupe_key,
    release_alerts,
)
from llmship.gateway.store import GatewayStore
from llmship.registry import (
    AlertAction,
    AlertActionKind,
    AliasMove,
    ReleaseRecord,
    RolloutRecord,
)
from llmship.registry.tables import REF_LENGTH
from llmship.rollout.ops import rollback_target

__all__ = ["AlertBook", "AlertOutcome", "WebhookResult", "handle_webhook"]

log = logging.getLogger(__name__)

PRODUCTION = "production"
ACTOR = "alertmanager"

Done = Literal["abort", "rollback", "notify", "ignored", "repeated", "none"]


@runtime_checkable
class AlertBook(Protocol):
    """Where alert actions are recorded and production is moved (the registry has it)."""

    def get_alias(self, env: str, alias: str) -> ReleaseRecord | None: ...

    def alias_history(self, env: str, alias: str) -> list[AliasMove]: ...

    def alert_action(self, env: str, dedupe_key: str) -> AlertAction | None: ...

    def record_alert_action(
        self,
        env: str,
        *,
        dedupe_key: str,
        alertname: str,
        ref: str,
        action: AlertActionKind,
        outcome: str,
        actor: str = ACTOR,
        rollback_to: str | None = None,
        reason: str = "",
    ) -> AlertAction | None: ...


@dataclass(frozen=True)
class AlertOutcome:
    """What one alert of a delivery did."""

    alert: str
    action: Done
    """``abort`` (a rollout's abort was requested), ``rollback`` (production moved
    back), ``notify`` (recorded only), ``ignored`` (recorded, nothing changed),
    ``repeated`` (this firing was handled before) or ``none`` (not for llmship)."""
    detail: str
    release: str | None = None
    rollout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the webhook's answer."""
        return {
            "alert": self.alert,
            "action": self.action,
            "release": self.release,
            "rollout": self.rollout,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class WebhookResult:
    """What a delivery did, alert by alert."""

    alerts: tuple[AlertOutcome, ...]

    @property
    def aborted(self) -> list[str]:
        """The rollouts whose abort this delivery requested."""
        return [o.rollout for o in self.alerts if o.action == "abort" and o.rollout]

    @property
    def repeated(self) -> int:
        """The alerts handled by an earlier delivery."""
        return sum(o.action == "repeated" for o in self.alerts)

    def to_dict(self) -> dict[str, Any]:
        """The webhook's answer: ``status``, ``aborted``, ``repeated`` and ``alerts``."""
        return {
            "status": "ok",
            "aborted": self.aborted,
            "repeated": self.repeated,
            "alerts": [o.to_dict() for o in self.alerts],
        }


def handle_webhook(
    store: GatewayStore, env: str, payload: WebhookPayload, *, rules: Callable[[], Environment]
) -> WebhookResult:
    """Act on each alert of ``payload`` in ``env``; ``rules`` gives the environment's
    rules (read only when an alert is about production)."""
    rollouts = store.list_rollouts(env, active_only=True)
    done: dict[str, list[AlertOutcome]] = {}
    for wanted in abort_requests(payload, rollouts):
        changed = store.request_rollout_abort(
            env, wanted.rollout_id, reason=wanted.reason, dedupe_key=wanted.dedupe_key
        )
        done.setdefault(wanted.dedupe_key, []).append(
            AlertOutcome(
                wanted.alert,
                "abort" if changed else "repeated",
                f"abort requested: {wanted.reason}" if changed else "abort already requested",
                rollout=wanted.rollout,
            )
        )
    for about in release_alerts(payload, env, rollouts):
        if about.dedupe_key in done:
            continue
        if isinstance(store, AlertBook):
            outcome = _production_alert(store, env, about, rollouts, rules)
        else:
            outcome = AlertOutcome(
                about.alert, "none", "this gateway's store records no alert actions", about.release
            )
        done[about.dedupe_key] = [outcome]
    outcomes: list[AlertOutcome] = []
    for alert in payload.alerts:
        key = dedupe_key(payload, alert)
        if key in done:
            outcomes.extend(done[key])
        elif not alert.firing:
            outcomes.append(AlertOutcome(alert.name, "none", "resolved: changes nothing"))
        elif alert.labels.get("action") != ROLLBACK_ACTION:
            outcomes.append(AlertOutcome(alert.name, "none", "not labelled action=rollback"))
        else:
            outcomes.append(
                AlertOutcome(
                    alert.name,
                    "none",
                    f"names no running rollout and no release of {env} (labels rollout, "
                    "version or model_version; env when given)",
                )
            )
    for o in outcomes:
        if o.action != "none":
            named = o.rollout or o.release
            log.info("alert %s (%s) in %s: %s, %s", o.alert, named, env, o.action, o.detail)
    return WebhookResult(tuple(outcomes))


def _production_alert(
    book: AlertBook,
    env: str,
    about: ReleaseAlert,
    rollouts: list[RolloutRecord],
    rules: Callable[[], Environment],
) -> AlertOutcome:
    """Roll production back, or note the alert, or record why it changes nothing."""
    earlier = book.alert_action(env, about.dedupe_key)
    if earlier is not None:
        return _repeated(about, earlier)
    production = book.get_alias(env, PRODUCTION)
    ref = about.release
    rollback_to = None
    action: AlertActionKind
    if rollouts:
        running = rollouts[0]
        action = "ignored"
        outcome = (
            f"rollout {running.name} runs in {env}: only an alert for its candidate "
            f"{running.candidate} aborts it"
        )
    elif production is None or about.release not in (production.ref, production.version):
        current = production.ref if production is not None else "none"
        action, outcome = "ignored", f"{about.release} is not production in {env} ({current} is)"
    else:
        ref = production.ref  # the release as the registry names it
        if rules().on_alert != "rollback":
            action, outcome = "notify", f"noted; production stays {ref} (on_alert: notify in {env})"
        else:
            try:
                rollback_to = rollback_target(book.alias_history(env, PRODUCTION), env)
                action, outcome = "rollback", ""
            except LlmshipError as exc:
                action, outcome = "ignored", f"nothing to roll back to: {exc.message}"
    recorded = book.record_alert_action(
        env,
        dedupe_key=about.dedupe_key,
        alertname=about.alert,
        ref=ref[:REF_LENGTH],
        action=action,
        outcome=outcome,
        actor=ACTOR,
        rollback_to=rollback_to,
        reason=about.reason,
    )
    if recorded is None:  # a delivery racing with this one recorded it first
        earlier = book.alert_action(env, about.dedupe_key)
        return _repeated(about, earlier)
    return AlertOutcome(about.alert, recorded.action, recorded.outcome, recorded.ref)


def _repeated(about: ReleaseAlert, earlier: AlertAction | None) -> AlertOutcome:
    before = f": {earlier.action}, {earlier.outcome}" if earlier is not None else ""
    return AlertOutcome(about.alert, "repeated", f"handled before{before}", about.release)
