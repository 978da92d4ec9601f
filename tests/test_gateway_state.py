"""The gateway's policy snapshot: make before break. A new policy that sends requests to a
release without a live model server waits until the server is there (or ``switch_wait``
runs out), so a production move, a rollback or a canary never answers 503 while its
server starts."""

from __future__ import annotations

import logging
from unittest import mock

import pytest

from fakes_gateway import FakeStore
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.state import GatewayState

OLD, NEW = "chat@1.0.0", "chat@1.1.0"


def state_with(store: FakeStore, switch_wait: float = 60.0) -> GatewayState:
    state = GatewayState(
        store, "dev", GatewayMetrics(), endpoint_max_age=30, switch_wait=switch_wait
    )
    assert state.refresh()
    return state


def routed_stable(state: GatewayState) -> str | None:
    assert state.snapshot is not None
    return state.snapshot.policy.stable


def test_production_moves_once_the_new_release_has_a_live_server() -> None:
    # Given the gateway routes to OLD, which has a server
    store = FakeStore([OLD, NEW], production=OLD)
    store.register_endpoint("dev", OLD, "http://old", pid=None)
    state = state_with(store)
    # When production moves to NEW, which has no server yet
    store.production = NEW
    state.refresh()
    # Then requests still go to OLD, and /readyz can say what it waits for
    assert routed_stable(state) == OLD
    assert state.waiting_for == (NEW,)
    # When NEW's server announces itself, the gateway switches
    store.register_endpoint("dev", NEW, "http://new", pid=None)
    state.refresh()
    assert routed_stable(state) == NEW
    assert state.waiting_for == ()


def test_a_canary_without_a_server_waits_but_a_shadow_does_not() -> None:
    store = FakeStore([OLD, NEW], production=OLD)
    store.register_endpoint("dev", OLD, "http://old", pid=None)
    state = state_with(store)
    policy = store.get_traffic("dev")
    store.set_traffic("dev", policy.with_(shadow=NEW, shadow_percent=10), actor="t", reason="")
    state.refresh()
    assert state.snapshot is not None and state.snapshot.policy.shadow == NEW  # nobody sees it
    policy = store.get_traffic("dev")
    store.set_traffic("dev", policy.with_(canary=NEW, canary_weight=20), actor="t", reason="")
    state.refresh()
    assert state.snapshot is not None and state.snapshot.policy.canary is None
    assert state.waiting_for == (NEW,)


def test_it_switches_anyway_after_switch_wait(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore([OLD, NEW], production=OLD)
    store.register_endpoint("dev", OLD, "http://old", pid=None)
    state = state_with(store, switch_wait=30)
    store.production = NEW
    with mock.patch("llmship.gateway.state.time.monotonic", return_value=1000.0):
        state.refresh()
    assert routed_stable(state) == OLD
    with (
        mock.patch("llmship.gateway.state.time.monotonic", return_value=1031.0),
        caplog.at_level(logging.WARNING, "llmship.gateway.state"),
    ):
        state.refresh()
    assert routed_stable(state) == NEW
    assert "llmship serve --release chat@1.1.0" in caplog.text


def test_switch_wait_zero_and_a_broken_old_policy_switch_at_once() -> None:
    store = FakeStore([OLD, NEW], production=OLD)
    store.register_endpoint("dev", OLD, "http://old", pid=None)
    state = state_with(store, switch_wait=0)
    store.production = NEW
    state.refresh()
    assert routed_stable(state) == NEW
    # Nothing to hold on to: the old policy had no server either
    store2 = FakeStore([OLD, NEW], production=OLD)
    state2 = state_with(store2)
    store2.production = NEW
    state2.refresh()
    assert routed_stable(state2) == NEW


def test_the_log_says_what_changed(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore([OLD, NEW], production=OLD)
    store.register_endpoint("dev", OLD, "http://old", pid=None)
    store.register_endpoint("dev", NEW, "http://new", pid=None)
    state = state_with(store)
    store.production = NEW
    with caplog.at_level(logging.INFO, "llmship.gateway.state"):
        state.refresh()
    assert f"stable {OLD} -> {NEW}" in caplog.text
    assert "revision 0 -> 0" not in caplog.text


def test_every_live_server_of_a_release_is_in_the_snapshot() -> None:
    store = FakeStore([OLD], production=OLD)
    for url in ("http://a", "http://b/", "http://c"):
        store.register_endpoint("dev", OLD, url, pid=None)
    store.age_endpoint(OLD, 1)
    store.register_endpoint("dev", OLD, "http://c", pid=None)  # the newest heartbeat
    state = state_with(store)
    assert state.snapshot is not None
    assert state.snapshot.endpoints[OLD] == ("http://c", "http://b", "http://a")
    assert state.snapshot.stable_url == "http://c"
    assert [r.url for r in state.balancer.replicas(OLD)] == ["http://c", "http://b", "http://a"]
    store.remove_endpoint("dev", OLD, "http://a")
    state.refresh()
    assert state.snapshot.endpoints[OLD] == ("http://c", "http://b")
    assert [r.url for r in state.balancer.replicas(OLD)] == ["http://c", "http://b"]
