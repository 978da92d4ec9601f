"""The gateway while the registry is down, and the records of which release answered
each query (written in batches, kept while the registry is down)."""

from __future__ import annotations

import logging

import pytest

from _gateway import (
    CANARY,
    Rig,
    experiment,
)

# -- registry outages ------------------------------------------------------------------------


def test_routing_goes_on_while_the_registry_is_down(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.set_policy(canary=CANARY, canary_weight=100)
    rig.store.down = True
    with caplog.at_level(logging.WARNING, logger="llmship.gateway.state"):
        for _ in range(3):
            assert not rig.gateway.state.refresh()
    warnings = [r for r in caplog.records if "cannot read the registry" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage"
    assert rig.metric("llmship_registry_up") == 0
    assert rig.chat().headers["x-llmship-version"] == CANARY
    assert rig.client.get("/readyz").status_code == 200
    rig.store.down = False
    assert rig.gateway.state.refresh()
    assert rig.metric("llmship_registry_up") == 1


def test_requests_never_touch_the_store(rig: Rig) -> None:
    """No request reads or writes the registry; only the recorder's batches, which
    its own task writes in the background, may run meanwhile."""

    def calls() -> dict[str, int]:
        return {k: v for k, v in rig.store.calls.items() if k != "record_queries"}

    before = calls()
    for _ in range(20):
        rig.chat()
    assert calls() == before


def test_queries_are_recorded_with_the_release_that_answered(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    r = rig.chat(**{"X-User-Id": "alice"})
    rig.chat(**{"X-User-Id": "bob"})
    bad = rig.chat({"messages": "not a list"}, **{"X-User-Id": "carol"})
    assert bad.status_code == 400  # refused by the gateway: no release answered it
    rig.flush()
    row = rig.store.queries[r.headers["x-request-id"]]
    assert (row.env, row.ref, row.variant, row.route, row.status, row.user_key) == (
        "dev",
        r.headers["x-llmship-version"],
        r.headers["x-llmship-variant"],
        "/v1/chat/completions",
        200,
        "alice",
    )
    assert len(rig.store.queries) == 2


def test_records_wait_while_the_registry_is_down(rig: Rig) -> None:
    r = rig.chat()
    rig.store.down = True
    assert rig.client.portal is not None
    rig.client.portal.call(rig.gateway.recorder.flush_quietly)
    assert rig.gateway.recorder.pending(r.headers["x-request-id"]) is not None
    rig.store.down = False
    rig.flush()
    assert r.headers["x-request-id"] in rig.store.queries
