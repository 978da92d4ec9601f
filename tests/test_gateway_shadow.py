"""The gateway's shadow traffic in process: a copy to the shadow release, compared,
never costing the client anything."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from _gateway import (
    CHAT,
    SHADOW,
    STABLE,
    Rig,
    answer,
    make_rig,
)
from fakes_gateway import FakeModelServers

# -- shadow ---------------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


@pytest.mark.parametrize("stream", [False, True])
def test_shadow_gets_a_copy_and_is_compared(rig: Rig, stream: bool) -> None:
    rig.servers[SHADOW].words = list(rig.servers[STABLE].words)  # the same answer
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    r = rig.chat({**CHAT, "stream": stream, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["x-llmship-version"] == STABLE
    wait_for(lambda: rig.metric("llmship_shadow_similarity_count", version=SHADOW) == 1)
    assert rig.metric("llmship_shadow_similarity_sum", version=SHADOW) == 1.0
    assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="ok") == 1
    sent = json.loads(rig.servers[SHADOW].requests[-1].content)
    assert sent["stream"] is False
    assert ("stream_options" in sent) is not stream  # dropped only where it was rewritten
    rig.flush()
    shadow_rows = [q for q in rig.store.queries.values() if q.variant == "shadow"]
    assert [(q.ref, q.status) for q in shadow_rows] == [(SHADOW, 200)]
    assert shadow_rows[0].query_id != r.headers["x-request-id"]


@pytest.mark.parametrize("mode", ["500", "refuse", "timeout"])
def test_a_failing_shadow_never_touches_the_client(rig: Rig, mode: str) -> None:
    rig.set_mode(SHADOW, mode)
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    for _ in range(3):
        r = rig.chat()
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == answer(STABLE)
    wait_for(
        lambda: rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="error") == 3
    )
    assert rig.metric("llmship_shadow_similarity_count", version=SHADOW) in (None, 0.0)


def test_a_slow_shadow_does_not_delay_the_client(rig: Rig) -> None:
    gate = threading.Event()
    rig.servers[SHADOW].gate = gate
    rig.set_policy(shadow=SHADOW, shadow_percent=100)
    started = time.monotonic()
    r = rig.chat()
    assert r.status_code == 200 and time.monotonic() - started < 1.0
    assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="ok") is None
    gate.set()
    wait_for(lambda: rig.metric("llmship_shadow_similarity_count", version=SHADOW) == 1)
    score = rig.metric("llmship_shadow_similarity_sum", version=SHADOW)
    assert score is not None and 0 < score < 1  # "answer from" matches, the refs differ


def test_shadow_requests_beyond_the_limit_are_dropped(fakes: FakeModelServers) -> None:
    with make_rig(fakes, shadow_max_in_flight=0) as rig:
        rig.set_policy(shadow=SHADOW, shadow_percent=100)
        assert rig.chat().status_code == 200
        assert rig.metric("llmship_shadow_requests_total", version=SHADOW, outcome="dropped") == 1
        assert rig.servers[SHADOW].requests == []
