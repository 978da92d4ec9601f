"""Alertmanager webhooks (payload version 4): parsing and matching alerts to rollouts.

Pure: no I/O. The gateway's ``POST /api/v1/alerts`` parses the body with
:func:`parse_webhook` (malformed -> ``InvalidRequestError``, a 400 saying what is
wrong), asks :func:`abort_requests` which active rollouts the firing alerts name,
and records each with ``Registry.request_rollout_abort``, which is idempotent by
the alert's dedupe key, so a repeated delivery changes nothing::

    payload = parse_webhook(body)
    for request in abort_requests(payload, registry.list_rollouts(env, active_only=True)):
        registry.request_rollout_abort(
            env, request.rollout_id, reason=request.reason, dedupe_key=request.dedupe_key
        )

An alert aborts a rollout when it is **firing**, is labelled ``action=rollback``,
and names the rollout: ``rollout=<name>`` (or its id), or ``version`` /
``model_version`` = the candidate as ``NAME@VERSION`` or just its ``VERSION``.
An ``env`` label, when there is one, must be the rollout's environment.
Resolved alerts never abort anything.

A firing ``action=rollback`` alert that names no running rollout but a release
(the same ``version`` / ``model_version`` labels) is a :class:`ReleaseAlert`
(:func:`release_alerts`): after a promotion, it is about the production release,
and :mod:`llmship.gateway.alert_actions` rolls production back or notes it, as the
environment's ``on_alert`` says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llmship.errors import InvalidRequestError

__all__ = [
    "ROLLBACK_ACTION",
    "AbortRequest",
    "Alert",
    "AlertTarget",
    "ReleaseAlert",
    "WebhookPayload",
    "abort_requests",
    "dedupe_key",
    "matches",
    "parse_webhook",
    "release_alerts",
]

SUPPORTED_VERSION = "4"
ROLLBACK_ACTION = "rollback"
VERSION_LABELS = ("version", "model_version")
MAX_ALERTS = 1000

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One alert of a webhook payload."""

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: str = ""
    """RFC 3339, as Alertmanager sent it (kept as text: it is part of the dedupe key)."""
    ends_at: str = ""
    generator_url: str = ""
    fingerprint: str = ""

    @property
    def firing(self) -> bool:
        """True while the alert fires."""
        return self.status == "firing"

    @property
    def name(self) -> str:
        """The ``alertname`` label (empty when absent)."""
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class WebhookPayload:
    """Alertmanager's webhook body, version 4."""

    version: str
    group_key: str
    status: Status
    receiver: str
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str] = field(default_factory=dict)
    common_labels: Mapping[str, str] = field(default_factory=dict)
    common_annotations: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0


class AlertTarget(Protocol):
    """What an alert is matched against: a rollout (``RolloutRecord`` fits)."""

    @property
    def id(self) -> int: ...

    @property
    def env(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def candidate(self) -> str: ...


@dataclass(frozen=True)
class AbortRequest:
    """One rollout a firing alert asks to abort."""

    rollout_id: int
    rollout: str
    alert: str
    reason: str
    dedupe_key: str


@dataclass(frozen=True)
class ReleaseAlert:
    """A firing rollback alert that names a release and no running rollout."""

    alert: str
    release: str
    """The label's value: ``NAME@VERSION`` or ``VERSION``."""
    reason: str
    """``alert NAME: SUMMARY``, kept in the alias history when production moves back."""
    dedupe_key: str


_STRING: dict[str, Any] = {"type": "string"}
_LABELS: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}
_STATUS: dict[str, Any] = {"type": "string", "enum": ["firing", "resolved"]}
WEBHOOK_SCHEMA: dict[str, Any] = {
    "title": "AlertmanagerWebhook",
    "type": "object",
    "description": "Alertmanager's webhook body (version 4); unknown fields are ignored.",
    "required": ["version", "status", "alerts"],
    "properties": {
        "version": {"type": "string", "enum": [SUPPORTED_VERSION]},
        "status": _STATUS,
        "alerts": {
            "type": "array",
            "maxItems": MAX_ALERTS,
            "items": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": _STATUS,
                    "labels": _LABELS,
                    "annotations": _LABELS,
                    **dict.fromkeys(("startsAt", "endsAt", "generatorURL", "fingerprint"), _STRING),
                },
            },
        },
        "groupLabels": _LABELS,
        "commonLabels": _LABELS,
        "commonAnnotations": _LABELS,
        **dict.fromkeys(("groupKey", "receiver", "externalURL"), _STRING),
        "truncatedAlerts": {"type": "integer", "minimum": 0},
    },
}
"""What :func:`parse_webhook` accepts, as the gateway's OpenAPI document states it."""


def _fail(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"Alertmanager webhook: {message}", param=param)


def _text(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise _fail(f"{where}{key} is required", key)
        return ""
    if not isinstance(value, str):
        raise _fail(f"{where}{key} must be a string, not {type(value).__name__}", key)
    return value


def _labels(data: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(f"{where}{key} must be a mapping of strings to strings", key)
    return dict(value)


def _status(data: Mapping[str, Any], where: str) -> Status:
    value = data.get("status")
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise _fail(f"{where}status must be 'firing' or 'resolved', not {value!r}", "status")


def _alert(data: Any, index: int) -> Alert:
    where = f"alerts[{index}]."
    if not isinstance(data, dict):
        raise _fail(f"alerts[{index}] must be an object", "alerts")
    return Alert(
        status=_status(data, where),
        labels=_labels(data, "labels", where),
        annotations=_labels(data, "annotations", where),
        starts_at=_text(data, "startsAt", where),
        ends_at=_text(data, "endsAt", where),
        generator_url=_text(data, "generatorURL", where),
        fingerprint=_text(data, "fingerprint", where),
    )


def parse_webhook(payload: Any) -> WebhookPayload:
    """Validate Alertmanager's webhook body; InvalidRequestError says what is wrong.

    Checks ``version`` ("4"), ``status``, and ``alerts`` (a list of objects with a
    ``status`` and string ``labels``); other fields are optional and unknown ones
    are ignored, as Alertmanager may add some.
    """
    if not isinstance(payload, dict):
        raise _fail("the body must be a JSON object", "body")
    version = payload.get("version")
    if version != SUPPORTED_VERSION:
        raise _fail(
            f"version must be {SUPPORTED_VERSION!r} (Alertmanager's webhook format), "
            f"not {version!r}",
            "version",
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise _fail("alerts must be a list", "alerts")
    if len(alerts) > MAX_ALERTS:
        raise _fail(f"at most {MAX_ALERTS} alerts per delivery", "alerts")
    truncated = payload.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise _fail("truncatedAlerts must be a non-negative integer", "truncatedAlerts")
    return WebhookPayload(
        version=SUPPORTED_VERSION,
        group_key=_text(payload, "groupKey", ""),
        status=_status(payload, ""),
        receiver=_text(payload, "receiver", ""),
        alerts=tuple(_alert(a, i) for i, a in enumerate(alerts)),
        group_labels=_labels(payload, "groupLabels", ""),
        common_labels=_labels(payload, "commonLabels", ""),
        common_annotations=_labels(payload, "commonAnnotations", ""),
        external_url=_text(payload, "externalURL", ""),
        truncated_alerts=truncated,
    )


def matches(alert: Alert, rollout: AlertTarget) -> bool:
    """Whether ``alert`` asks to abort ``rollout``.

    It must be firing, labelled ``action=rollback``, not name another environment
    (an ``env`` label), and name the rollout (``rollout`` = its name or id) or its
    candidate (``version`` or ``model_version`` = ``NAME@VERSION`` or ``VERSION``).
    """
    labels = alert.labels
    if not alert.firing or labels.get("action") != ROLLBACK_ACTION:
        return False
    if "env" in labels and labels["env"] != rollout.env:
        return False
    named = labels.get("rollout")
    if named is not None and named in (rollout.name, str(rollout.id)):
        return True
    version = rollout.candidate.partition("@")[2]
    return any(labels.get(key) in (rollout.candidate, version) for key in VERSION_LABELS)


def dedupe_key(payload: WebhookPayload, alert: Alert) -> str:
    """The identity of one firing of one alert: sha256 of the group key, the alert's
    fingerprint (its labels when Alertmanager sent none) and its start time.

    Alertmanager repeats a notification (``repeat_interval``, retries) with the same
    three; an alert that resolves and fires again has a new start time.
    """
    fingerprint = alert.fingerprint or ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    text = "\x1f".join((payload.group_key, fingerprint, alert.starts_at))
    return hashlib.sha256(text.encode()).hexdigest()


def abort_requests(payload: WebhookPayload, rollouts: Iterable[AlertTarget]) -> list[AbortRequest]:
    """One request per (firing alert, rollout it names), in payload order."""
    targets = list(rollouts)
    requests = []
    for alert in payload.alerts:
        for rollout in targets:
            if not matches(alert, rollout):
                continue
            summary = alert.annotations.get("summary") or alert.annotations.get("description")
            reason = (f"alert {alert.name} fired" if alert.name else "an alert fired") + (
                f": {summary}" if summary else ""
            )
            requests.append(
                AbortRequest(
                    rollout_id=rollout.id,
                    rollout=rollout.name,
                    alert=alert.name,
                    reason=reason,
                    dedupe_key=dedupe_key(payload, alert),
                )
            )
    return requests


def release_alerts(
    payload: WebhookPayload, env: str, rollouts: Iterable[AlertTarget] = ()
) -> list[ReleaseAlert]:
    """The firing ``action=rollback`` alerts of ``payload`` for ``env`` (an ``env``
    label, when there is one, must be it) that name a release, leaving out those that
    name one of the running ``rollouts`` (:func:`abort_requests` takes them)."""
    targets = list(rollouts)
    found = []
    for alert in payload.alerts:
        labels = alert.labels
        if not alert.firing or labels.get("action") != ROLLBACK_ACTION:
            continue
        if labels.get("env", env) != env or any(matches(alert, r) for r in targets):
            continue
        release = next((labels[key] for key in VERSION_LABELS if labels.get(key)), None)
        if release is None:
            continue
        summary = alert.annotations.get("summary") or alert.annotations.get("description")
        reason = f"alert {alert.name or '(unnamed)'}" + (f": {summary}" if summary else "")
        found.append(ReleaseAlert(alert.name, release, reason, dedupe_key(payload, alert)))
    return found
