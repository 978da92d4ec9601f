"""Replicas of a release at the gateway: the balancer's decisions in memory (injected clock
and RNG), then a gateway in front of real model-server fakes, each on its own port (uvicorn
in a thread), that can be killed, made to fail or to answer garbage."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from _procs import ThreadedServer, free_port
from fakes_gateway import FakeStore
from llmship.gateway import Gateway, create_app
from llmship.gateway.balancer import Balancer
from llmship.gateway.metrics import GatewayMetrics
from llmship.settings import Settings

STABLE, CANARY = "chat@1.0.0", "chat@1.1.0"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the balancer alone -------------------------------------------------------------------


def balancer(seed: int = 0) -> tuple[Balancer, FakeClock, GatewayMetrics]:
    clock, metrics = FakeClock(), GatewayMetrics()
    return Balancer(metrics, clock=clock, rng=random.Random(seed)), clock, metrics


def test_two_replicas_least_outstanding_wins() -> None:
    b, _, _ = balancer()
    urls = ("http://a", "http://b")
    first = b.pick(STABLE, urls)
    assert first is not None
    for _ in range(20):  # the other one is idle: it always wins
        other = b.pick(STABLE, urls)
        assert other is not None and other.url != first.url
        other.end()
    first.end()
    picked = {b.pick(STABLE, urls).url for _ in range(20)}  # type: ignore[union-attr]
    assert picked == set(urls)  # ties are drawn at random


def test_power_of_two_choices_never_picks_the_busiest() -> None:
    b, _, _ = balancer()
    urls = ("http://a", "http://b", "http://c", "http://d")
    held = [b.pick(STABLE, ("http://a",)) for _ in range(5)]
    assert all(h is not None for h in held)
    seen = set()
    for _ in range(200):
        attempt = b.pick(STABLE, urls)
        assert attempt is not None
        seen.add(attempt.url)
        attempt.end()
    assert seen == {"http://b", "http://c", "http://d"}


@pytest.mark.parametrize(
    ("failures", "out_for"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (9, 30.0)],
)
def test_backoff_doubles_up_to_30s(failures: int, out_for: float) -> None:
    b, clock, _ = balancer()
    b.sync({STABLE: ("http://a",)})
    for _ in range(failures):
        clock.now += 100  # each failure is a trial after the last backoff
        attempt = b.pick(STABLE, ("http://a",))
        assert attempt is not None
        attempt.failed("connect")
        attempt.end()
    (replica,) = b.replicas(STABLE)
    assert (replica.failures, replica.out_until - clock.now) == (failures, out_for)


def test_out_of_rotation_until_the_trial_then_back() -> None:
    b, clock, metrics = balancer()
    urls = ("http://a", "http://b")
    b.sync({STABLE: urls})
    bad = b.pick(STABLE, ("http://a",))
    assert bad is not None
    bad.failed("http_500")
    bad.end()
    assert (
        metrics.registry.get_sample_value(
            "llmship_upstream_replicas", {"version": STABLE, "state": "out"}
        )
        == 1
    )
    for _ in range(10):  # out: every request goes to b
        a = b.pick(STABLE, urls)
        assert a is not None and a.url == "http://b"
        a.end()
    clock.now += 1.0
    trial = held = None
    for _ in range(10):  # backoff over: a gets one trial, not two at once
        a = b.pick(STABLE, urls)
        assert a is not None
        if a.url == "http://a":
            assert trial is None and a.trial
            trial = a
        else:
            held = a
    assert trial is not None and held is not None
    trial.succeeded()
    trial.end()
    assert (
        metrics.registry.get_sample_value(
            "llmship_upstream_replicas", {"version": STABLE, "state": "in"}
        )
        == 2
    )
    assert b.replicas(STABLE)[0].failures == 0  # the backoff starts over


def test_when_all_are_out_the_least_recently_failed_is_tried_once() -> None:
    b, clock, _ = balancer()
    urls = ("http://a", "http://b", "http://c")
    for url in urls:
        attempt = b.pick(STABLE, (url,))
        assert attempt is not None
        attempt.failed("connect")
        attempt.end()
        clock.now += 0.1  # a failed first, c last
    tried = [a.url for a in b.attempts(STABLE, urls)]
    assert tried == ["http://a"]


def test_a_request_tries_each_replica_at_most_once() -> None:
    b, _, _ = balancer()
    urls = ("http://a", "http://b", "http://c")
    tried = []
    for attempt in b.attempts(STABLE, urls):
        tried.append(attempt.url)
        attempt.failed("connect")
        attempt.end()
    # three in rotation, then none left untried: no forced fourth
    assert sorted(tried) == sorted(urls)


def test_an_abandoned_trial_lets_another_request_try() -> None:
    b, clock, _ = balancer()
    urls = ("http://a",)
    first = b.pick(STABLE, urls)
    assert first is not None
    first.failed("timeout")
    first.end()
    clock.now += 1.0
    trial = b.pick(STABLE, urls)
    assert trial is not None and trial.trial
    trial.end()  # the client left before the answer: not judged
    again = b.pick(STABLE, urls)
    assert again is not None and again.trial


def test_sync_forgets_withdrawn_replicas_and_their_series() -> None:
    b, _, metrics = balancer()
    b.sync({STABLE: ("http://a", "http://b"), CANARY: ("http://c",)})
    a = b.pick(STABLE, ("http://a",))
    assert a is not None
    value = metrics.registry.get_sample_value
    assert value("llmship_upstream_outstanding", {"version": STABLE, "replica": "http://a"}) == 1
    b.sync({STABLE: ("http://b",)})
    assert [r.url for r in b.replicas(STABLE)] == ["http://b"]
    assert value("llmship_upstream_outstanding", {"version": STABLE, "replica": "http://a"}) is None
    assert value("llmship_upstream_replicas", {"version": CANARY, "state": "in"}) is None
    assert value("llmship_upstream_replicas", {"version": STABLE, "state": "in"}) == 1
    a.end()  # an answer still streaming when its server withdrew ends quietly


# -- a gateway in front of real model servers ---------------------------------------------------


class FakeReplica:
    """One model server on its own port. ``mode``: ok, 500, 429, garbage (a 200 that is
    not JSON) or garbage_stream (a 200 event stream that is not server-sent events).
    ``gate``, when given, holds every answer until it is set. :meth:`kill` stops it:
    the port then refuses connections."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.gate: threading.Event | None = None
        self.requests = 0
        self._stopping = threading.Event()
        self._http = ThreadedServer(self.app, f"the fake replica {name}")
        self.url = f"http://127.0.0.1:{self._http.port}"

    def start(self) -> FakeReplica:
        self._http.start()
        return self

    def kill(self) -> None:
        self._stopping.set()
        self._http.stop()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        self.requests += 1
        while self.gate is not None and not self.gate.is_set() and not self._stopping.is_set():
            await asyncio.sleep(0.005)
        stream = bool(json.loads(b"".join(chunks)).get("stream"))
        status, content_type, body = self._answer(stream)
        headers = [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, stream: bool) -> tuple[int, bytes, bytes]:
        if self.mode in ("500", "429"):
            error = {"error": {"message": f"{self.name} says {self.mode}", "type": "x"}}
            return int(self.mode), b"application/json", json.dumps(error).encode()
        if self.mode == "garbage":
            return 200, b"application/json", b"<html>502 Bad Gateway</html>"
        if self.mode == "garbage_stream":
            return 200, b"text/event-stream", b"this is not an event\n\n"
        text = f"from {self.name}"
        if stream:
            event = {"choices": [{"index": 0, "delta": {"content": text}}]}
            return 200, b"text/event-stream", b"data: " + json.dumps(event).encode() + b"\n\n"
        message = {"role": "assistant", "content": text}
        answer = {"choices": [{"index": 0, "message": message}], "usage": {"completion_tokens": 2}}
        return 200, b"application/json", json.dumps(answer).encode()


@dataclass
class Rig:
    """A gateway over a fake store whose releases' endpoints are fake replicas."""

    client: TestClient
    store: FakeStore
    gateway: Gateway
    replicas: dict[str, FakeReplica]
    clock: FakeClock

    def metric(self, name: str, **labels: str) -> float | None:
        return self.gateway.metrics.registry.get_sample_value(name, labels)

    def chat(self, stream: bool = False) -> httpx.Response:
        return self.client.post("/v1/chat/completions", json={**CHAT, "stream": stream})

    def add(self, ref: str, url: str) -> None:
        self.store.register_endpoint("dev", ref, url, pid=None)
        assert self.gateway.state.refresh()

    def failures(self, ref: str, reason: str, variant: str = "stable") -> float:
        labels = {"version": ref, "variant": variant, "reason": reason}
        return self.metric("llmship_upstream_failures_total", **labels) or 0.0

    def replicas_in(self, ref: str, state: str = "in") -> float | None:
        return self.metric("llmship_upstream_replicas", version=ref, state=state)


@contextmanager
def make_rig(layout: dict[str, tuple[str, ...]], **cfg: Any) -> Iterator[Rig]:
    """``layout``: release -> names of its replicas (each a fake on its own port)."""
    with ExitStack() as stack:
        replicas: dict[str, FakeReplica] = {}
        store = FakeStore([STABLE, CANARY], production=STABLE)
        for ref, names in layout.items():
            for name in names:
                replica = replicas[name] = FakeReplica(name).start()
                stack.callback(replica.kill)
                store.register_endpoint("dev", ref, replica.url, pid=None)
        settings = Settings(
            home=Path("/nonexistent"),
            env="dev",
            policy_refresh_interval=3600,
            **{"upstream_timeout": 1.0, **cfg},
        )
        app = create_app(store, settings, rng=random.Random(0))
        gateway: Gateway = app.state.gateway
        clock = FakeClock()
        gateway.state.balancer.clock = clock  # frozen unless a test moves it
        client = stack.enter_context(TestClient(app))
        yield Rig(client, store, gateway, replicas, clock)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def names_of(responses: list[httpx.Response]) -> list[str]:
    return [r.json()["choices"][0]["message"]["content"].removeprefix("from ") for r in responses]


def test_requests_are_spread_by_outstanding_requests() -> None:
    # Given two replicas of stable that hold their answers
    with make_rig({STABLE: ("a", "b")}) as rig:
        gate = threading.Event()
        a, b = rig.replicas["a"], rig.replicas["b"]
        a.gate = b.gate = gate
        with ThreadPoolExecutor(4) as pool:
            # When four requests arrive one after another, each while the others wait
            futures = []
            for n in range(1, 5):
                futures.append(pool.submit(rig.chat))
                wait_for(lambda n=n: a.requests + b.requests == n)  # type: ignore[misc]
            # Then each replica has two outstanding
            assert (a.requests, b.requests) == (2, 2)
            for replica in (a, b):
                labels = {"version": STABLE, "replica": replica.url}
                assert rig.metric("llmship_upstream_outstanding", **labels) == 2
            gate.set()
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 4
        assert sorted(names_of(responses)) == ["a", "a", "b", "b"]
        labels = {"version": STABLE, "replica": a.url}
        wait_for(lambda: rig.metric("llmship_upstream_outstanding", **labels) == 0)


def test_sequential_requests_alternate_over_replicas() -> None:
    with make_rig({STABLE: ("a", "b", "c", "d")}) as rig:
        answers = names_of([rig.chat() for _ in range(80)])
        counts = {name: answers.count(name) for name in "abcd"}
        assert all(n >= 10 for n in counts.values()), counts  # nobody is left out


def test_a_killed_replica_costs_clients_nothing() -> None:
    # Given steady load on two replicas of stable
    with make_rig({STABLE: ("a", "b")}) as rig:
        stop = threading.Event()
        statuses: list[int] = []

        def load() -> None:
            while not stop.is_set():
                statuses.append(rig.chat().status_code)

        with ThreadPoolExecutor(3) as pool:
            for _ in range(3):
                pool.submit(load)
            wait_for(lambda: len(statuses) >= 30)
            # When one replica dies
            rig.replicas["b"].kill()
            before = rig.replicas["a"].requests
            wait_for(lambda: rig.replicas["a"].requests >= before + 60)
            stop.set()
        # Then no client saw an error, and the dead one is out of rotation
        assert set(statuses) == {200}
        failed = rig.failures(STABLE, "connect") + rig.failures(STABLE, "disconnected")
        assert 1 <= failed <= 3  # at most one per request that was on its way to it
        assert (rig.replicas_in(STABLE, "in"), rig.replicas_in(STABLE, "out")) == (1, 1)


def test_a_replica_that_refuses_connections_is_skipped_from_then_on() -> None:
    with make_rig({STABLE: ("a",)}) as rig:
        dead = f"http://127.0.0.1:{free_port()}"
        rig.add(STABLE, dead)
        for _ in range(30):
            r = rig.chat()
            assert r.status_code == 200 and names_of([r]) == ["a"]
        assert rig.failures(STABLE, "connect") == 1
        # After its backoff (1 s) it gets one trial, fails again, and waits 2 s
        rig.clock.now += 1.0
        for _ in range(10):
            assert rig.chat().status_code == 200
        assert rig.failures(STABLE, "connect") == 2
        rig.clock.now += 1.5
        for _ in range(10):
            assert rig.chat().status_code == 200
        assert rig.failures(STABLE, "connect") == 2


@pytest.mark.parametrize(
    ("mode", "stream", "reason"),
    [
        ("500", False, "http_500"),
        ("429", True, "http_429"),
        ("garbage", False, "malformed"),
        ("garbage_stream", True, "malformed"),
    ],
)
def test_a_failing_replica_is_ejected_then_tried_again_after_its_backoff(
    mode: str, stream: bool, reason: str
) -> None:
    # Given two replicas of stable, one of them failing
    with make_rig({STABLE: ("a", "b")}) as rig:
        bad = rig.replicas["b"]
        bad.mode = mode
        # When requests come: the first that meets it is retried on the good one
        for _ in range(20):
            r = rig.chat(stream)
            assert r.status_code == 200, r.text
            assert "from a" in r.text
        # Then it was tried once and is out of rotation
        assert bad.requests == 1
        assert rig.failures(STABLE, reason) == 1
        assert rig.replicas_in(STABLE, "out") == 1
        # When it recovers and its backoff is over, a trial request brings it back
        bad.mode = "ok"
        rig.clock.now += 1.0
        answers = names_of([rig.chat() for _ in range(20)])
        assert "b" in answers
        assert (rig.replicas_in(STABLE, "in"), rig.replicas_in(STABLE, "out")) == (2, 0)


def test_a_canary_with_every_replica_down_falls_back_to_stable() -> None:
    with make_rig({STABLE: ("s",), CANARY: ("c1", "c2")}) as rig:
        policy = rig.store.policy
        rig.store.policy = replace(policy, canary=CANARY, canary_weight=100, revision=1)
        assert rig.gateway.state.refresh()
        rig.replicas["c1"].kill()
        rig.replicas["c2"].mode = "500"
        for _ in range(5):
            r = rig.chat()
            assert r.status_code == 200
            assert r.headers["x-llmship-version"] == STABLE
        # The first request tried both, the next ones only the least recently failed
        assert (
            rig.failures(CANARY, "connect", "canary") + rig.failures(CANARY, "http_500", "canary")
            == 2 + 4
        )
        assert rig.replicas_in(CANARY, "out") == 2


def test_stable_with_every_replica_failing_passes_the_last_answer_on() -> None:
    with make_rig({STABLE: ("a", "b")}) as rig:
        rig.replicas["a"].mode = rig.replicas["b"].mode = "429"
        r = rig.chat()
        assert r.status_code == 429
        assert rig.replicas["a"].requests + rig.replicas["b"].requests == 2
        assert rig.failures(STABLE, "http_429") == 2


def test_garbage_from_the_only_replica_is_a_502_not_passed_on() -> None:
    with make_rig({STABLE: ("a",)}) as rig:
        rig.replicas["a"].mode = "garbage"
        r = rig.chat()
        assert r.status_code == 502
        assert "garbage" in r.json()["error"]["message"]


def test_a_withdrawn_replica_is_dropped_at_the_next_refresh() -> None:
    with make_rig({STABLE: ("a", "b")}) as rig:
        rig.store.remove_endpoint("dev", STABLE, rig.replicas["b"].url)
        assert rig.gateway.state.refresh()
        assert set(names_of([rig.chat() for _ in range(10)])) == {"a"}
        assert rig.replicas["b"].requests == 0
        assert rig.failures(STABLE, "connect") == 0
