"""Changing an environment's traffic policy: what ``llmship traffic set`` and the
admin API do, as functions over a store (the registry, or the gateway's view of it).

:func:`change` applies ``traffic set``'s options on top of the current policy
(:class:`Changes`, :func:`apply`), naming the revision it read;
:func:`promote_preview` moves ``production`` to the preview; :func:`set_policy` and
:func:`reset` replace and clear the policy. The promotion guard is the store's own
(``registry/_guard.py``): these pass ``force`` on. The callers keep parsing, printing
and HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from llmship.errors import InvalidRequestError
from llmship.registry.records import given_reason
from llmship.routing.policy import Experiment, TrafficPolicy, Variant
from llmship.routing.store import TrafficPolicies

__all__ = [
    "Changes",
    "TrafficStore",
    "apply",
    "change",
    "parse_variants",
    "promote_preview",
    "reset",
    "set_policy",
]

NONE = "none"
VARIANTS_HELP = "--variants: write NAME=RELEASE:WEIGHT,... (e.g. A=chat@1.0.0:50,B=chat@1.1.0:50)"


class TrafficStore(TrafficPolicies, Protocol):
    """The registry methods these workflows call (``Registry`` and the gateway's
    ``GatewayStore`` have them): the policies and their reset."""

    def reset_traffic(self, env: str, *, actor: str, reason: str) -> TrafficPolicy: ...


@dataclass(frozen=True)
class Changes:
    """What `traffic set` was asked to change; None means "leave as it is"."""

    canary: str | None = None
    weight: float | None = None
    preview: str | None = None
    experiment: str | None = None
    variants: str | None = None
    shadow: str | None = None
    percent: float | None = None

    def any(self) -> bool:
        """True when at least one change was asked for."""
        return any(value is not None for value in vars(self).values())


def _is_none(value: str) -> bool:
    return value.strip().lower() == NONE


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``A=chat@1.0.0:50,B=chat@1.1.0:50`` -> the variants, strictly."""
    variants = []
    for item in text.split(","):
        name, eq, rest = item.strip().partition("=")
        ref, colon, weight = rest.rpartition(":")
        if not (eq and colon and name.strip() and ref.strip() and weight.strip()):
            raise InvalidRequestError(f"{VARIANTS_HELP}; got {item.strip()!r}", param="variants")
        try:
            share = float(weight)
        except ValueError:
            raise InvalidRequestError(
                f"{VARIANTS_HELP}; the weight {weight!r} of {name.strip()} is not a number",
                param="variants",
            ) from None
        variants.append(Variant(name.strip(), ref.strip(), share))
    return tuple(variants)


def _share(
    env: str,
    running: tuple[str | None, float],
    ref: str | None,
    share: float | None,
    *,
    role: str,
    unit: str,
) -> tuple[str | None, float] | None:
    """The new (release, percent) of a canary or shadow; None when unchanged.

    ``--ROLE REF`` with ``--UNIT N`` starts or changes it, ``--UNIT`` alone
    changes the running one's share, ``--ROLE none`` or ``--UNIT 0`` ends it.
    """
    current_ref, current_share = running
    if ref is not None:
        if _is_none(ref):
            if share:
                raise InvalidRequestError(f"--{role} none ends the {role}: leave out --{unit}")
            return None, 0.0
        if share == 0:
            return None, 0.0
        if share is None and current_ref is not None:
            share = current_share
        if share is None:
            raise InvalidRequestError(
                f"--{role} {ref}: give --{unit} N too (the percent of requests for it)",
                param=unit,
            )
        return ref, share
    if share is None:
        return None if current_ref is None else (current_ref, current_share)
    if current_ref is None:
        raise InvalidRequestError(
            f"--{unit} sets the {role}'s share, but no {role} runs in {env}: "
            f"give --{role} NAME@VERSION too",
            param=unit,
        )
    return (None, 0.0) if share == 0 else (current_ref, share)


def _experiment(policy: TrafficPolicy, changes: Changes) -> Experiment | None:
    """The experiment after ``changes``."""
    if changes.experiment is not None:
        if _is_none(changes.experiment):
            if changes.variants is not None:
                raise InvalidRequestError(
                    "--experiment none ends the experiment: leave out --variants"
                )
            return None
        if changes.variants is None:
            raise InvalidRequestError(
                f"--experiment {changes.experiment}: give its variants too; {VARIANTS_HELP}",
                param="variants",
            )
        return Experiment(changes.experiment.strip(), parse_variants(changes.variants))
    if changes.variants is None:
        return policy.experiment
    if policy.experiment is None:
        raise InvalidRequestError(
            f"--variants changes the running experiment, but none runs in {policy.env}: "
            "give --experiment NAME too",
            param="variants",
        )
    return Experiment(policy.experiment.name, parse_variants(changes.variants))


def apply(policy: TrafficPolicy, changes: Changes) -> TrafficPolicy:
    """``policy`` with ``changes`` (not yet checked against the registry)."""
    env = policy.env
    canary = _share(
        env,
        (policy.canary, policy.canary_weight),
        changes.canary,
        changes.weight,
        role="canary",
        unit="weight",
    )
    shadow = _share(
        env,
        (policy.shadow, policy.shadow_percent),
        changes.shadow,
        changes.percent,
        role="shadow",
        unit="percent",
    )
    preview = policy.preview
    if changes.preview is not None:
        preview = None if _is_none(changes.preview) else changes.preview
    return replace(
        policy,
        canary=canary[0] if canary else None,
        canary_weight=canary[1] if canary else 0.0,
        preview=preview,
        experiment=_experiment(policy, changes),
        shadow=shadow[0] if shadow else None,
        shadow_percent=shadow[1] if shadow else 0.0,
    )


def change(
    store: TrafficStore,
    env: str,
    changes: Changes,
    *,
    actor: str,
    reason: str | None,
    reset: bool = False,
    promote: bool = False,
    force: bool = False,
) -> TrafficPolicy:
    """``llmship traffic set``: promote the preview first (``promote``), then clear
    everything (``reset``) and apply ``changes`` on top, in one write that names the
    revision read; the policy after. The promotion guard refuses a preview, or a
    share of the traffic, without the gates ``llmship.yaml`` requires; ``force``
    overrides it (recorded) and needs a reason of its own.
    """
    why = given_reason(reason)
    if promote:
        policy, why = _promote(store, env, force=force, reason=reason, actor=actor)
    else:
        policy = store.get_traffic(env)
    if reset and not changes.any():
        return store.reset_traffic(env, actor=actor, reason=why)
    if changes.any():
        start = TrafficPolicy(env=env, stable=policy.stable) if reset else policy
        return store.set_traffic(
            env,
            apply(start, changes),
            actor=actor,
            reason=why,
            expected_revision=policy.revision,
            force=force,
        )
    return policy


def promote_preview(
    store: TrafficStore, env: str, *, force: bool, reason: str | None, actor: str
) -> TrafficPolicy:
    """Point ``production`` at the preview, when the preview has the passing gates
    ``llmship.yaml`` requires (GateError, 409, otherwise; ``force`` overrides, recorded,
    and needs a ``reason`` of its own)."""
    return _promote(store, env, force=force, reason=reason, actor=actor)[0]


def set_policy(
    store: TrafficStore,
    env: str,
    policy: TrafficPolicy,
    *,
    actor: str,
    reason: str | None,
    expected_revision: int | None = None,
    force: bool = False,
) -> TrafficPolicy:
    """Replace the policy of ``env`` with ``policy`` (its ``stable`` is the
    ``production`` alias); ConflictError when ``expected_revision`` is not the stored one,
    GateError when it gives a release a guarded share without its gates (unless
    ``force`` with a reason)."""
    return store.set_traffic(
        env,
        policy,
        actor=actor,
        reason=given_reason(reason),
        expected_revision=expected_revision,
        force=force,
    )


def reset(store: TrafficStore, env: str, *, actor: str, reason: str | None) -> TrafficPolicy:
    """Clear canary, preview, experiment and shadow: all traffic to stable."""
    return store.reset_traffic(env, actor=actor, reason=given_reason(reason))


def _promote(
    store: TrafficStore, env: str, *, force: bool, reason: str | None, actor: str
) -> tuple[TrafficPolicy, str]:
    """The policy after promoting the preview, and the reason recorded with it."""
    why = given_reason(reason)
    return store.promote_preview(env, actor=actor, reason=why, force=force), why
