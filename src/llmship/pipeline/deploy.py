"""The last stages of a pipeline: into staging (served, smoke-tested), the approval of
the promotion into the target, and the target's rollout followed to its end.

Promotions go through :mod:`llmship.pipeline.promotion` (its checks, its approvals,
the target's rollout spec); the environments are served by ``llmship up --env NAME``,
whose gateways announce themselves in the registry. A stage that needs a gateway
and finds none fails and says which command serves the environment.

A stage that waits on a person returns a detail with ``waiting`` (what it waits
for) and ``next`` (the commands to run); ``llmship pipeline run --resume RUN``
calls it again, and it looks at how the approval was decided.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from llmship.errors import NotFoundError
from llmship.pipeline.model import StageFailed
from llmship.pipeline.traffic import LiveTraffic, smoke_request
from llmship.release.promotion_guard import check_promotion

if TYPE_CHECKING:
    from llmship.environments import Environment
    from llmship.pipeline.promotion import Promotion
    from llmship.pipeline.stages import Context

__all__ = ["approval_stage", "gateway_url", "production_stage", "staging_stage"]

PRODUCTION = "production"
POLL_S = 1.0
"""Seconds between two looks at a rollout or a gateway."""
PROBE_TIMEOUT_S = 2.0


# -- gateways ----------------------------------------------------------------------------


def gateway_url(ctx: Context, env: Environment) -> str:
    """The base URL of a live gateway of ``env``: announced in the registry, else
    answering on the environment's ``gateway_port``; StageFailed says how to serve it."""
    from llmship.registry.records import GATEWAY_MAX_AGE_S

    live = ctx.registry.list_gateways(env.name, max_age_s=GATEWAY_MAX_AGE_S)
    candidates = [g.url.rstrip("/") for g in live]
    if env.gateway_port:
        candidates.append(f"http://127.0.0.1:{env.gateway_port}")
    for url in candidates:
        try:
            if httpx.get(f"{url}/healthz", timeout=PROBE_TIMEOUT_S).status_code == 200:
                return url
        except httpx.HTTPError:
            continue
    port = f" (port {env.gateway_port})" if env.gateway_port else ""
    raise StageFailed(
        f"no live gateway of {env.name}{port}: serve the environment with "
        f"`llmship up --env {env.name}` and run the pipeline again"
    )


def wait_served(ctx: Context, stage: str, env: Environment, ref: str) -> dict[str, Any]:
    """Wait until ``env``'s gateway answers a chat completion with ``ref`` (its
    ``X-Llmship-Version``), the smoke test; StageFailed after ``serve_timeout``."""
    url = gateway_url(ctx, env)
    ctx.note(stage, f"waiting for {url} to answer with {ref}")
    deadline = time.monotonic() + ctx.options.serve_timeout
    last = "no answer yet"
    while True:
        answer = smoke_request(url)
        if answer.version == ref and answer.ok:
            ctx.note(stage, f"smoke test: {ref} answered {answer.text[:60]!r}")
            return {"gateway": url, "answered_by": ref, "answer": answer.text[:200]}
        last = answer.describe()
        if time.monotonic() >= deadline:
            raise StageFailed(
                f"{env.name}'s gateway {url} did not answer with {ref} within "
                f"{ctx.options.serve_timeout:.0f}s (last: {last}); is `llmship up --env "
                f"{env.name}` running?",
                {"gateway": url, "last": last},
            )
        ctx.sleep(POLL_S)


# -- promotions ----------------------------------------------------------------------------


def _promote(ctx: Context, env: Environment, ref: str) -> Promotion:
    """Promote ``ref`` into ``env``: from the environment before it, or, for the first
    environment (none to promote from), its gates checked and its production moved."""
    from llmship.pipeline.promotion import Promotion, promote

    if ctx.envs.before(env.name) is None:
        reason = check_promotion(
            ctx.registry,
            env.name,
            ref,
            force=False,
            reason=ctx.reason,
            actor=ctx.actor,
            required=env.require,
        )
        move = ctx.registry.set_alias(env.name, PRODUCTION, ref, actor=ctx.actor, reason=reason)
        return Promotion(
            state="moved",
            ref=ref,
            env=env.name,
            source_env=None,
            rollout_id=None,
            approval_id=None,
            message=f"{ref} is now the production release of {env.name} "
            f"({move.from_ref or '(none)'} -> {move.to_ref})",
        )
    return promote(
        ctx.registry,
        ctx.envs,
        ref,
        to=env.name,
        actor=ctx.actor,
        reason=ctx.reason,
        yes=ctx.options.yes,
        pipeline_run=ctx.run_id,
    )


def _is_production(ctx: Context, env: str, ref: str) -> bool:
    current = ctx.registry.get_alias(env, PRODUCTION)
    return current is not None and current.ref == ref


def _waiting(ctx: Context, promotion: Promotion) -> dict[str, Any]:
    return {
        "promotion": "pending",
        "approval": promotion.approval_id,
        "waiting": promotion.message,
        "next": [
            f"llmship approve {promotion.approval_id}",
            f"llmship pipeline run --resume {ctx.run_id}",
        ],
    }


def _decided(ctx: Context, stage: str, env: Environment, ref: str) -> dict[str, Any] | None:
    """On resume: what became of the approval the stage waited on (None: none was asked)."""
    approval_id = ctx.found.get(stage, {}).get("approval")
    if approval_id is None:
        return None
    request = ctx.registry.get_approval(int(approval_id))
    if request.state == "pending":
        return {
            "promotion": "pending",
            "approval": request.id,
            "waiting": f"approval {request.id} of {ref} into {env.name} is still pending",
            "next": [
                f"llmship approve {request.id}",
                f"llmship pipeline run --resume {ctx.run_id}",
            ],
        }
    if request.state == "rejected":
        raise StageFailed(
            f"approval {request.id} was rejected by {request.decided_by}: "
            f"{request.decision_reason}",
            {"approval": request.id, "promotion": "rejected"},
        )
    by = {"approval": request.id, "approved_by": request.decided_by}
    if _is_production(ctx, env.name, ref):
        return {**by, "promotion": "moved", "waiting": None, "next": []}
    for rollout in ctx.registry.list_rollouts(env.name, limit=20):
        if rollout.candidate == ref:
            return {
                **by,
                "promotion": "started",
                "rollout": rollout.id,
                "waiting": None,
                "next": [],
            }
    raise StageFailed(
        f"approval {request.id} was approved, but {ref} neither is production in {env.name} "
        "nor has a rollout there",
        by,
    )


# -- the stages ------------------------------------------------------------------------------


def staging_stage(ctx: Context) -> dict[str, Any]:
    """The release into staging (the environment before the target), and into any
    environment before staging first; then staging's gateway must answer with it."""
    staging = ctx.staging
    if staging is None:
        return {"skipped": f"{ctx.target.name} is the first environment: no staging"}
    assert ctx.ref is not None
    ref = ctx.ref
    decided = _decided(ctx, "staging", staging, ref)
    if decided is not None and decided.get("promotion") == "pending":
        return decided
    detail: dict[str, Any] = dict(decided or {})
    chain = ctx.envs.names[: ctx.envs.names.index(staging.name) + 1]
    for name in chain:
        env = ctx.envs.declared(name)
        if _is_production(ctx, name, ref):
            continue
        active = _active_rollout_of(ctx, name, ref)
        if active is not None:
            follow_rollout(ctx, "staging", env, active, traffic=False)
            continue
        if name == staging.name:
            gateway_url(ctx, staging)  # served? fail before moving anything
        promotion = _promote(ctx, env, ref)
        ctx.note("staging", promotion.message)
        if promotion.state == "pending":
            return _waiting(ctx, promotion)
        if promotion.state == "started":
            assert promotion.rollout_id is not None
            follow_rollout(ctx, "staging", env, promotion.rollout_id, traffic=False)
    detail.update(wait_served(ctx, "staging", staging, ref))
    return {**detail, "env": staging.name, "waiting": None, "next": []}


def _active_rollout_of(ctx: Context, env: str, ref: str) -> int | None:
    active = ctx.registry.active_rollout(env)
    return active.id if active is not None and active.candidate == ref else None


def approval_stage(ctx: Context) -> dict[str, Any]:
    """The promotion into the target: pending (the run waits for ``llmship approve``),
    approved at once with ``--yes`` where the target allows it, or not needed."""
    assert ctx.ref is not None
    target = ctx.target
    decided = _decided(ctx, "approval", target, ctx.ref)
    if decided is not None:
        return decided
    gateway_url(ctx, target)  # served? fail before asking anyone
    promotion = _promote(ctx, target, ctx.ref)
    ctx.note("approval", promotion.message)
    if promotion.state == "pending":
        return _waiting(ctx, promotion)
    detail: dict[str, Any] = {"promotion": promotion.state, "waiting": None, "next": []}
    if promotion.approval_id is not None:
        detail["approval"] = promotion.approval_id
    if promotion.rollout_id is not None:
        detail["rollout"] = promotion.rollout_id
    if not target.approval:
        detail["skipped"] = f"{target.name} needs no approval"
    return detail


def production_stage(ctx: Context) -> dict[str, Any]:
    """The target's rollout followed to its end (under live traffic with ``--traffic``),
    or, where the alias moved at once, the target's gateway answering with the release."""
    assert ctx.ref is not None
    target = ctx.target
    rollout_id = ctx.found.get("approval", {}).get("rollout")
    if rollout_id is None:
        served = wait_served(ctx, "production", target, ctx.ref)
        return {**served, "env": target.name}
    return follow_rollout(ctx, "production", target, int(rollout_id), traffic=ctx.options.traffic)


def follow_rollout(
    ctx: Context, stage: str, env: Environment, rollout_id: int, *, traffic: bool
) -> dict[str, Any]:
    """Watch the rollout until it is promoted (then ``env``'s gateway must answer with the
    release) or aborted (StageFailed), telling each step; with ``traffic``, live requests
    through ``env``'s gateway meanwhile."""
    url = gateway_url(ctx, env)
    live = LiveTraffic(url, ctx.options.traffic_rps) if traffic else None
    if live is not None:
        live.start()
        ctx.note(stage, f"live traffic through {url} at {ctx.options.traffic_rps:g} rps")
    deadline = time.monotonic() + ctx.options.rollout_timeout
    seen = ""
    try:
        while True:
            record = ctx.registry.get_rollout(rollout_id)
            line = _describe(record)
            if line != seen:
                ctx.note(stage, line)
                seen = line
            if not record.active:
                break
            if time.monotonic() >= deadline:
                raise StageFailed(
                    f"rollout {rollout_id} in {env.name} did not end within "
                    f"{ctx.options.rollout_timeout:.0f}s ({line}); it goes on: "
                    f"`llmship rollout status --env {env.name}`",
                    {"rollout": rollout_id},
                )
            ctx.sleep(POLL_S)
    finally:
        sent = live.stop() if live is not None else None
    detail: dict[str, Any] = {
        "rollout": rollout_id,
        "env": env.name,
        "phase": record.phase,
        "message": record.message,
    }
    if sent is not None:
        detail["traffic"] = sent
    if record.phase != "Healthy":
        why = record.abort_reason or record.message
        raise StageFailed(f"rollout {rollout_id} in {env.name} was rolled back: {why}", detail)
    assert ctx.ref is not None
    return {**detail, **wait_served(ctx, stage, env, ctx.ref)}


def _describe(record: Any) -> str:
    """One line on where the rollout is: phase, step, weight, why it pauses or aborted."""
    from llmship.rollout.machine import describe
    from llmship.rollout.records import state_of

    try:
        step = describe(state_of(record))
        weight = state_of(record).weight
    except (KeyError, ValueError, NotFoundError):
        step, weight = "", None
    parts = [f"rollout {record.id} {record.phase}"]
    if step:
        parts.append(step)
    if weight is not None:
        parts.append(f"candidate at {weight}%")
    if record.pause_reason:
        parts.append(f"paused: {record.pause_reason}")
    if record.abort_reason:
        parts.append(f"aborted: {record.abort_reason}")
    return ", ".join(parts)
