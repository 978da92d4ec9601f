"""Routing decisions: weights, stickiness, preview, shadow (pure, injected RNG)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmship.errors import InvalidRequestError
from llmship.routing import (
    Experiment,
    NoReleaseError,
    TrafficPolicy,
    Variant,
    bucket,
    choose,
    in_percent,
    mirror,
)

STABLE, CANDIDATE = "chat@1.0.0", "chat@1.1.0"


def ab(weight_b: float, name: str = "exp1") -> TrafficPolicy:
    return TrafficPolicy(
        env="dev",
        stable=STABLE,
        experiment=Experiment(
            name, (Variant("A", STABLE, 100 - weight_b), Variant("B", CANDIDATE, weight_b))
        ),
    )


def test_canary_weight_matches_over_many_requests() -> None:
    policy = TrafficPolicy(env="dev", stable=STABLE, canary=CANDIDATE, canary_weight=20)
    rng = random.Random(42)
    counts = Counter(
        choose(policy, user_key=None, wants_preview=False, rng=rng).variant for _ in range(10_000)
    )
    assert counts["canary"] / 10_000 == pytest.approx(0.20, abs=0.015)
    assert set(counts) == {"stable", "canary"}


@pytest.mark.parametrize(("weight", "expected"), [(0, 0), (100, 1000)])
def test_canary_edges(weight: float, expected: int) -> None:
    policy = TrafficPolicy(env="dev", stable=STABLE, canary=CANDIDATE, canary_weight=weight)
    rng = random.Random(1)
    routes = [choose(policy, user_key=None, wants_preview=False, rng=rng) for _ in range(1000)]
    assert sum(r.variant == "canary" for r in routes) == expected


def test_preview_only_for_requests_that_ask() -> None:
    policy = TrafficPolicy(env="dev", stable=STABLE, preview=CANDIDATE)
    rng = random.Random(0)
    assert choose(policy, user_key=None, wants_preview=True, rng=rng).ref == CANDIDATE
    assert choose(policy, user_key=None, wants_preview=False, rng=rng).ref == STABLE
    no_preview = TrafficPolicy(env="dev", stable=STABLE)
    assert choose(no_preview, user_key=None, wants_preview=True, rng=rng).ref == STABLE


def test_experiment_is_sticky_and_split_by_weight() -> None:
    policy = ab(50)
    rng = random.Random(0)
    first = {
        u: choose(policy, user_key=u, wants_preview=False, rng=rng) for u in map(str, range(4000))
    }
    again = {u: choose(policy, user_key=u, wants_preview=False, rng=rng) for u in first}
    assert first == again
    assert all(r.sticky and r.keyed for r in first.values())
    share_b = sum(r.variant == "B" for r in first.values()) / len(first)
    assert share_b == pytest.approx(0.5, abs=0.03)


def test_raising_a_variant_keeps_its_users() -> None:
    users = [f"user-{i}" for i in range(5000)]
    rng = random.Random(0)
    before = {
        u for u in users if choose(ab(10), user_key=u, wants_preview=False, rng=rng).variant == "B"
    }
    after = {
        u for u in users if choose(ab(30), user_key=u, wants_preview=False, rng=rng).variant == "B"
    }
    assert before < after
    assert len(after) / len(users) == pytest.approx(0.30, abs=0.03)


def test_experiments_with_different_names_split_independently() -> None:
    users = [str(i) for i in range(2000)]
    rng = random.Random(0)
    a = [choose(ab(50, "e1"), user_key=u, wants_preview=False, rng=rng).variant for u in users]
    b = [choose(ab(50, "e2"), user_key=u, wants_preview=False, rng=rng).variant for u in users]
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(users)
    assert agreement == pytest.approx(0.5, abs=0.05)


def test_requests_without_key_are_random_and_marked() -> None:
    rng = random.Random(3)
    routes = [choose(ab(50), user_key=None, wants_preview=False, rng=rng) for _ in range(1000)]
    assert not any(r.keyed or r.sticky for r in routes)
    assert 400 < sum(r.variant == "B" for r in routes) < 600


def test_shadow_share() -> None:
    policy = TrafficPolicy(env="dev", stable=STABLE, shadow=CANDIDATE, shadow_percent=10)
    rng = random.Random(5)
    mirrored = sum(mirror(policy, rng) == CANDIDATE for _ in range(10_000))
    assert mirrored / 10_000 == pytest.approx(0.10, abs=0.01)
    assert mirror(TrafficPolicy(env="dev", stable=STABLE), rng) is None


def test_no_stable_release() -> None:
    with pytest.raises(NoReleaseError, match="no production release"):
        choose(TrafficPolicy(env="dev"), user_key=None, wants_preview=False, rng=random.Random())


def test_bucket_is_deterministic_and_percent_is_monotonic() -> None:
    assert bucket("alice", "flag") == bucket("alice", "flag")
    assert 0 <= bucket("alice", "flag") < 10_000
    users = [str(i) for i in range(3000)]
    at10 = {u for u in users if in_percent(u, "f", 10)}
    at25 = {u for u in users if in_percent(u, "f", 25)}
    assert at10 <= at25
    assert not any(in_percent(u, "f", 0) for u in users)
    assert all(in_percent(u, "f", 100) for u in users)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"canary": CANDIDATE, "canary_weight": 120}, "between 0 and 100"),
        ({"shadow": CANDIDATE, "shadow_percent": -1}, "between 0 and 100"),
        ({"canary": STABLE, "canary_weight": 10}, "already the stable"),
        ({"experiment": Experiment("e", (Variant("A", STABLE, 50),))}, "at least two"),
        (
            {
                "experiment": Experiment(
                    "e", (Variant("A", STABLE, 50), Variant("B", CANDIDATE, 40))
                )
            },
            "add up to 90",
        ),
        (
            {
                "experiment": Experiment(
                    "e", (Variant("A", STABLE, 50), Variant("A", CANDIDATE, 50))
                )
            },
            "must differ",
        ),
        (
            {
                "experiment": Experiment(
                    "e", (Variant("stable", STABLE, 50), Variant("B", CANDIDATE, 50))
                )
            },
            "variant name",
        ),
        (
            {"canary": CANDIDATE, "canary_weight": 5, "experiment": ab(50).experiment},
            "cannot run at once",
        ),
    ],
)
def test_policy_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        TrafficPolicy(env="dev", stable=STABLE).with_(**changes)


def test_policy_round_trips_and_lists_releases() -> None:
    policy = ab(20).with_(preview="chat@2.0.0", shadow="chat@3.0.0", shadow_percent=5)
    assert TrafficPolicy.from_dict(policy.to_dict()) == policy
    assert policy.releases() == [STABLE, "chat@2.0.0", "chat@3.0.0", CANDIDATE]
    assert policy.weights() == {"A": 80.0, "B": 20.0}


def test_routed_releases_are_those_whose_answers_clients_see() -> None:
    policy = TrafficPolicy(env="dev", stable="a@1", canary="a@2", canary_weight=0)
    assert policy.routed() == ["a@1"]  # a canary at 0% answers nobody
    policy = policy.with_(canary_weight=10, preview="a@3", shadow="a@4", shadow_percent=50)
    assert policy.routed() == ["a@1", "a@2", "a@3"]
    ab = Experiment("ab", (Variant("x", "a@1", 100), Variant("y", "a@5", 0)))
    assert TrafficPolicy(env="dev", stable="a@1", experiment=ab).routed() == ["a@1"]


def test_describe_change_names_what_moved() -> None:
    old = TrafficPolicy(env="dev", stable="a@1", revision=3)
    assert old.describe_change(old) == "unchanged"
    assert old.describe_change(old.with_(stable="a@2")) == "stable a@1 -> a@2"
    new = old.with_(canary="a@2", canary_weight=20, revision=4)
    assert old.describe_change(new) == "canary a@2 at 20%, revision 3 -> 4"
    assert new.describe_change(old.with_(revision=5)) == "no canary, revision 4 -> 5"
