"""The gateway's routing in process: canary weights under an injected RNG, previews,
A/B experiments, routing flags, one policy per request."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace

from _gateway import (
    CANARY,
    CHAT,
    OTHER,
    PREVIEW,
    STABLE,
    Rig,
    experiment,
    make_rig,
)
from fakes_gateway import FakeModelServers, SeenRequest
from llmship.flags import Flag
from llmship.routing import bucket

# -- routing -----------------------------------------------------------------------------


def test_canary_weight_is_exact_under_an_injected_rng(fakes: FakeModelServers) -> None:
    with make_rig(fakes, seed=7) as rig:
        rig.set_policy(canary=CANARY, canary_weight=20)
        versions = Counter(rig.chat().headers["x-llmship-version"] for _ in range(400))
    replay = random.Random(7)
    expected = sum(replay.random() * 100 < 20 for _ in range(400))
    assert versions[CANARY] == expected
    assert versions[STABLE] == 400 - expected
    assert 0.15 < expected / 400 < 0.25


def test_preview_answers_only_requests_that_ask_for_it(rig: Rig) -> None:
    rig.set_policy(preview=PREVIEW)
    assert rig.chat().headers["x-llmship-version"] == STABLE
    r = rig.chat(**{"X-Llmship-Variant": "preview"})
    assert (r.headers["x-llmship-version"], r.headers["x-llmship-variant"]) == (PREVIEW, "preview")
    assert {rig.chat().headers["x-llmship-version"] for _ in range(20)} == {STABLE}


def test_a_request_uses_one_policy_from_start_to_end(rig: Rig) -> None:
    """The policy changes while a canary request is in flight (and fails): the retry
    goes to the stable release of the policy the request started with."""
    rig.set_policy(canary=CANARY, canary_weight=100)
    rig.servers[CANARY].mode = "500"

    def promote_meanwhile(_: SeenRequest) -> None:
        rig.store.production = OTHER
        rig.store.policy = replace(rig.store.policy, canary=None, canary_weight=0.0)
        rig.gateway.state.refresh()

    rig.servers[CANARY].on_request = promote_meanwhile
    r = rig.chat()
    assert r.headers["x-llmship-version"] == STABLE
    assert rig.chat().headers["x-llmship-version"] == OTHER  # the next request: new policy


def test_ab_assignment_is_sticky_and_matches_the_hash(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    seen = set()
    for n in range(40):
        user = f"user-{n}"
        first = rig.chat(**{"X-User-Id": user}).headers["x-llmship-variant"]
        again = rig.chat({**CHAT, "user": user}).headers["x-llmship-variant"]  # OpenAI `user`
        assert first == again
        assert first == ("a" if bucket(user, "exp") < 5000 else "b")
        seen.add(first)
    assert seen == {"a", "b"}
    assert rig.metric("llmship_unkeyed_requests_total", experiment="exp") in (None, 0.0)


def test_raising_a_variants_share_keeps_its_users(rig: Rig) -> None:
    rig.set_policy(experiment=experiment((80, 20)))
    users = [f"u{n}" for n in range(60)]
    before = {u for u in users if rig.chat(**{"X-User-Id": u}).headers["x-llmship-variant"] == "b"}
    rig.set_policy(experiment=experiment((50, 50)))
    after = {u for u in users if rig.chat(**{"X-User-Id": u}).headers["x-llmship-variant"] == "b"}
    assert before and before <= after and len(after) > len(before)


def test_unkeyed_experiment_requests_are_counted_apart(rig: Rig) -> None:
    rig.set_policy(experiment=experiment())
    for _ in range(7):
        assert rig.chat().status_code == 200
    rig.chat(**{"X-User-Id": "someone"})
    assert rig.metric("llmship_unkeyed_requests_total", experiment="exp") == 7


def test_a_routing_flag_sends_its_users_to_its_release(rig: Rig) -> None:
    rig.store.flags["beta"] = Flag(
        "beta", enabled=True, percent=100, conditions={"plan": "pro"}, release=OTHER
    )
    rig.gateway.state.refresh()
    r = rig.chat(**{"X-User-Id": "u1", "X-Llmship-Attr-plan": "pro"})
    assert (r.headers["x-llmship-version"], r.headers["x-llmship-variant"]) == (OTHER, "flag-beta")
    # the client named `chat`; the other release is named `other`: the body says so
    assert json.loads(rig.servers[OTHER].requests[-1].content).get("model") is None
    r = rig.chat({**CHAT, "model": "chat"}, **{"X-Llmship-Attr-plan": "pro"})
    assert json.loads(rig.servers[OTHER].requests[-1].content)["model"] == "other"
    r = rig.chat({**CHAT, "model": "other"}, **{"X-Llmship-Attr-plan": "pro"})
    assert r.headers["x-llmship-version"] == OTHER  # a flag's release is a valid `model`
    assert rig.chat(**{"X-Llmship-Attr-plan": "free"}).headers["x-llmship-version"] == STABLE
    assert rig.chat().headers["x-llmship-version"] == STABLE
