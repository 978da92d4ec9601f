"""Traffic policies in the registry: read with ``stable`` filled in, checked, stored.

Each function takes an open session; the transaction is the caller's. The
stored JSON never holds ``stable``: that is always where the environment's
``production`` alias points, read in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from llmship.errors import LlmshipError, SpecError
from llmship.registry import _queries as q
from llmship.registry.tables import TrafficPolicyRow
from llmship.routing.policy import TrafficPolicy

STABLE_ALIAS = "production"


def load(
    session: Session, env: str, *, for_update: bool = False
) -> tuple[TrafficPolicy, TrafficPolicyRow | None]:
    """The policy of ``env`` (revision 0 when none is stored) and its row.

    A canary that has meanwhile become the stable release (its alias was moved
    there) is over, and is left out.
    """
    row = session.get(TrafficPolicyRow, env, with_for_update=for_update)
    target = q.alias_target(session, env, STABLE_ALIAS)
    stable = f"{target.name}@{target.version}" if target is not None else None
    if row is None:
        return TrafficPolicy(env=env, stable=stable, revision=0), None
    try:
        stored = TrafficPolicy.from_dict(json.loads(row.policy))
    except (ValueError, KeyError, TypeError, LlmshipError) as exc:
        raise SpecError(
            f"the registry holds a traffic policy for {env} that this llmship cannot read "
            f"({exc}); replace it with `llmship traffic set --reset`"
        ) from exc
    policy = replace(stored, env=env, stable=stable, revision=row.revision)
    if policy.canary is not None and policy.canary == stable:
        policy = replace(policy, canary=None, canary_weight=0.0)
    return policy, row


def canonical(session: Session, policy: TrafficPolicy, env: str) -> TrafficPolicy:
    """``policy`` with every release it names checked and written ``NAME@VERSION``.

    An alias is resolved to the release it points at now; a release that is not
    registered is a NotFoundError that names the role (canary, preview, ...).
    """
    return policy.map_refs(lambda ref, role: q.canonical_ref(session, ref, env, role=role))


def store(
    session: Session,
    row: TrafficPolicyRow | None,
    policy: TrafficPolicy,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Write ``policy`` (its ``revision`` included) as the policy of ``policy.env``."""
    data = policy.to_dict()
    for derived in ("stable", "revision"):
        data.pop(derived, None)
    text = json.dumps(data, sort_keys=True)
    if row is None:
        session.add(
            TrafficPolicyRow(
                env=policy.env,
                policy=text,
                revision=policy.revision,
                updated_at=now,
                updated_by=actor,
            )
        )
    else:
        row.policy = text
        row.revision = policy.revision
        row.updated_at = now
        row.updated_by = actor
    session.flush()
