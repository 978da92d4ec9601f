"""The supervisor's decisions: start, restart with backoff, stop after a grace period."""

from __future__ import annotations

import pytest

from llmship.supervisor.plan import (
    BACKOFF_MAX,
    HEALTHY_AFTER,
    STOP_GRACE,
    ChildState,
    backoff,
    plan,
    record_exit,
    record_start,
)


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0), (1, 1), (2, 2), (3, 4), (6, 30), (50, BACKOFF_MAX)]
)
def test_backoff_doubles_up_to_a_cap(failures: int, delay: float) -> None:
    assert backoff(failures) == delay


def test_needed_children_start_once() -> None:
    children: dict[str, ChildState] = {}
    assert plan({"gateway", "serve:a@1"}, children, 0).start == ["gateway", "serve:a@1"]
    for name in ("gateway", "serve:a@1"):
        children[name] = ChildState(name)
        record_start(children[name], 0)
    assert plan({"gateway", "serve:a@1"}, children, 1).start == []


def test_crashed_child_restarts_after_backoff() -> None:
    child = ChildState("serve:a@1")
    children = {"serve:a@1": child}
    record_start(child, 0)
    record_exit(child, 2, expected=False)
    assert child.failures == 1
    assert plan({"serve:a@1"}, children, 2.5).start == []
    assert plan({"serve:a@1"}, children, 3.0).start == ["serve:a@1"]
    record_start(child, 3)
    record_exit(child, 4, expected=False)
    assert child.failures == 2
    assert plan({"serve:a@1"}, children, 5.9).start == []
    assert plan({"serve:a@1"}, children, 6.0).start == ["serve:a@1"]


def test_a_long_healthy_run_resets_the_backoff() -> None:
    child = ChildState("gateway", failures=5)
    record_start(child, 0)
    record_exit(child, HEALTHY_AFTER + 1, expected=False)
    assert child.failures == 1


def test_unneeded_child_stops_after_grace_and_comes_back_if_needed() -> None:
    child = ChildState("serve:old@1")
    children = {"serve:old@1": child}
    record_start(child, 0)
    assert plan(set(), children, 10).stop == []
    assert plan({"serve:old@1"}, children, 12).stop == []  # needed again: grace restarts
    assert plan(set(), children, 13).stop == []
    assert plan(set(), children, 13 + STOP_GRACE).stop == ["serve:old@1"]
    record_exit(child, 19, expected=True)
    assert child.failures == 0
    assert plan(set(), children, 30) == plan(set(), {}, 30)
    assert plan({"serve:old@1"}, children, 31).start == ["serve:old@1"]


def test_nothing_stops_until_what_takes_traffic_is_ready() -> None:
    # Given the old production release's server runs and production moved on
    old = ChildState("serve:old@1")
    children = {"serve:old@1": old}
    record_start(old, 0)
    # While the new release is not ready, the old server is kept and its grace not started
    assert plan({"serve:new@1"}, children, 1, settled=False).stop == []
    assert plan({"serve:new@1"}, children, 1 + STOP_GRACE * 3, settled=False).stop == []
    # Once it is ready, the grace period starts
    start = 1 + STOP_GRACE * 3
    assert plan({"serve:new@1"}, children, start, settled=True).stop == []
    assert plan({"serve:new@1"}, children, start + STOP_GRACE, settled=True).stop == ["serve:old@1"]
