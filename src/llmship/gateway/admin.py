"""What the admin API does, as blocking calls on the store (the router runs them in threads)."""

from __future__ import annotations

from llmship.errors import InvalidRequestError, NotFoundError
from llmship.flags import Flag, alternate_name
from llmship.gateway.protocol import FlagBody, TrafficView
from llmship.gateway.state import live_endpoints
from llmship.gateway.store import GatewayStore


def traffic_view(store: GatewayStore, env: str, *, endpoint_max_age: float) -> TrafficView:
    """The stored policy and the live model servers of each of its releases."""
    policy = store.get_traffic(env)
    return TrafficView.of(
        policy, live_endpoints(store.list_endpoints(env, max_age_s=endpoint_max_age))
    )


def put_flag(store: GatewayStore, env: str, name: str, body: FlagBody, *, actor: str) -> Flag:
    """Create or replace flag ``name`` with ``body``."""
    if body.name is not None and body.name != name:
        raise InvalidRequestError(
            f"the body names the flag {body.name!r} but the path {name!r}; make them agree",
            param="name",
        )
    flag = Flag(
        name=name,
        enabled=body.enabled,
        percent=body.percent,
        conditions=dict(body.conditions),
        release=body.release,
    )
    flag.validate()
    return store.set_flag(env, flag, actor=actor)


def find_flag(store: GatewayStore, env: str, name: str) -> Flag | None:
    """Flag ``name``, or its other spelling (``new-model``/``new_model``) when only that
    one exists; None when neither does."""
    for candidate in (name, alternate_name(name)):
        try:
            return store.get_flag(env, candidate)
        except NotFoundError:
            continue
    return None


def toggle_flag(store: GatewayStore, env: str, name: str, *, actor: str) -> Flag:
    """Flip flag ``name`` (or its other spelling, when only that one exists); a flag
    that does not exist is created enabled. The registry flips it in one transaction."""
    return store.toggle_flag(env, name, actor=actor)
