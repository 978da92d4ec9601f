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
    server_names,
    server_ref,
    server_threads,
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


def test_each_replica_is_a_child_of_its_own() -> None:
    assert server_names("chat@1.0.0", 2) == ["serve:chat@1.0.0#1", "serve:chat@1.0.0#2"]
    assert server_ref("serve:chat@1.0.0#2") == ("chat@1.0.0", 2)
    assert [server_ref(n) for n in server_names("a-b.c@2.0.0-rc.1", 1)] == [("a-b.c@2.0.0-rc.1", 1)]


@pytest.mark.parametrize(
    ("setting", "spec", "replicas", "share", "threads"),
    [
        (None, None, 1, 8, None),  # one server: the release's own, else half the cores
        (None, 4, 1, 8, None),
        (None, None, 2, 8, 4),  # replicas share half the cores
        (None, None, 3, 8, 2),
        (None, None, 4, 1, 1),  # at least one each
        (None, 4, 2, 8, None),  # the release's runtime.n_threads is per server
        (3, None, 1, 8, 3),  # the setting wins over everything
        (3, 4, 2, 8, 3),
    ],
)
def test_threads_of_each_replica(
    setting: int | None, spec: int | None, replicas: int, share: int, threads: int | None
) -> None:
    assert server_threads(setting, spec, replicas, share) == threads


def test_a_crashed_replica_restarts_alone_and_unneeded_replicas_stop() -> None:
    # Given two replicas of a@1 running
    names = server_names("a@1", 2)
    children = {name: ChildState(name) for name in names}
    for child in children.values():
        record_start(child, 0)
    # When the second one crashes, only it is restarted, after its backoff
    record_exit(children[names[1]], 2, expected=False)
    assert plan(set(names), children, 2.5) == plan(set(), {}, 0)
    assert plan(set(names), children, 3).start == [names[1]]
    record_start(children[names[1]], 3)
    # When fewer replicas are needed (a@1 with one), the others stop after the grace
    assert plan({names[0]}, children, 4).stop == []
    assert plan({names[0]}, children, 4 + STOP_GRACE).stop == [names[1]]
