"""The traffic workflows (``registry/traffic_ops.py``) that ``llmship traffic`` and the
admin API both call: ``traffic set``'s options applied to a policy (a table of cases),
and the changes over a real SQLite registry, the promotion guard included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _registry import chat_registry
from llmship.errors import ConflictError, GateError, InvalidRequestError
from llmship.registry import Registry
from llmship.registry.records import NO_REASON
from llmship.registry.traffic_ops import (
    Changes,
    apply,
    change,
    parse_variants,
    promote_preview,
    reset,
    set_policy,
)
from llmship.routing.policy import Experiment, TrafficPolicy, Variant

V1, V2, V3 = "chat@1.0.0", "chat@1.1.0", "chat@2.0.0"
AB = Experiment("ab", (Variant("A", V1, 50.0), Variant("B", V2, 50.0)))
EMPTY = TrafficPolicy(env="dev", stable=V1)
CANARY = EMPTY.with_(canary=V2, canary_weight=20.0)
SHADOW = EMPTY.with_(shadow=V2, shadow_percent=10.0)
RUNNING = EMPTY.with_(experiment=AB)


@pytest.mark.parametrize(
    ("policy", "changes", "expected"),
    [
        (EMPTY, {"canary": V2, "weight": 20}, {"canary": V2, "canary_weight": 20.0}),
        (CANARY, {"weight": 50}, {"canary": V2, "canary_weight": 50.0}),
        (CANARY, {"canary": V3}, {"canary": V3, "canary_weight": 20.0}),  # keeps the share
        (CANARY, {"canary": "none"}, {}),
        (CANARY, {"canary": "NONE "}, {}),
        (CANARY, {"weight": 0}, {}),
        (CANARY, {"canary": V3, "weight": 0}, {}),
        (EMPTY, {"shadow": V2, "percent": 10}, {"shadow": V2, "shadow_percent": 10.0}),
        (SHADOW, {"percent": 30}, {"shadow": V2, "shadow_percent": 30.0}),
        (SHADOW, {"shadow": "none"}, {}),
        (EMPTY, {"preview": V2}, {"preview": V2}),
        (EMPTY.with_(preview=V2), {"preview": "none"}, {}),
        (EMPTY, {"experiment": "ab", "variants": f"A={V1}:50,B={V2}:50"}, {"experiment": AB}),
        (
            RUNNING,
            {"variants": f"A={V1}:70,B={V2}:30"},
            {"experiment": Experiment("ab", (Variant("A", V1, 70.0), Variant("B", V2, 30.0)))},
        ),
        (RUNNING, {"experiment": "none"}, {}),
        (
            CANARY,
            {"shadow": V3, "percent": 5},
            {"canary": V2, "canary_weight": 20.0, "shadow": V3, "shadow_percent": 5.0},
        ),
    ],
)
def test_apply(policy: TrafficPolicy, changes: dict[str, Any], expected: dict[str, Any]) -> None:
    assert apply(policy, Changes(**changes)) == EMPTY.with_(**expected)


@pytest.mark.parametrize(
    ("policy", "changes", "message"),
    [
        (EMPTY, {"weight": 20}, "--weight sets the canary's share, but no canary runs in dev"),
        (EMPTY, {"canary": V2}, f"--canary {V2}: give --weight N too"),
        (CANARY, {"canary": "none", "weight": 5}, "--canary none ends the canary: leave out"),
        (EMPTY, {"percent": 5}, "--percent sets the shadow's share, but no shadow runs in dev"),
        (EMPTY, {"experiment": "ab"}, "--experiment ab: give its variants too"),
        (EMPTY, {"variants": f"A={V1}:50,B={V2}:50"}, "but none runs in dev"),
        (RUNNING, {"experiment": "none", "variants": "A=x:1"}, "leave out --variants"),
    ],
)
def test_apply_refuses(policy: TrafficPolicy, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("+", r"\+")):
        apply(policy, Changes(**changes))


@pytest.mark.parametrize(
    ("text", "message"),
    [("A=chat@1.0.0", "got 'A=chat@1.0.0'"), ("A=chat@1.0.0:half", "'half' of A is not a number")],
)
def test_parse_variants_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_variants(text)


def test_parse_variants() -> None:
    assert parse_variants(f" A={V1}:25 , B={V2}:75") == (
        Variant("A", V1, 25.0),
        Variant("B", V2, 75.0),
    )


# -- over the registry ------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with chat_registry(tmp_path / "registry.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        yield reg


def reasons(registry: Registry, kind: str) -> list[str]:
    """The reasons of the events of ``kind``, oldest first."""
    return [e.data["reason"] for e in reversed(registry.events(kind=kind))]


def test_change_applies_on_top_and_reset_clears_first(registry: Registry) -> None:
    change(registry, "dev", Changes(shadow=V3, percent=5), actor="a", reason="mirror")
    both = change(registry, "dev", Changes(canary=V2, weight=20), actor="a", reason=None)
    assert (both.canary, both.shadow, both.revision) == (V2, V3, 2)
    only = change(registry, "dev", Changes(canary=V2, weight=30), actor="a", reason="r", reset=True)
    assert (only.canary, only.canary_weight, only.shadow, only.revision) == (V2, 30.0, None, 3)
    cleared = change(registry, "dev", Changes(), actor="a", reason="done", reset=True)
    assert cleared == TrafficPolicy(env="dev", stable=V1, revision=4)
    assert reasons(registry, "traffic.changed") == ["mirror", NO_REASON, "r"]
    assert reasons(registry, "traffic.reset") == ["done"]


def test_change_promotes_the_preview_then_applies(registry: Registry) -> None:
    change(registry, "dev", Changes(preview=V2), actor="a", reason="blue-green")
    after = change(
        registry, "dev", Changes(shadow=V3, percent=10), actor="ann", reason="go", promote=True
    )
    assert (after.stable, after.preview, after.shadow, after.revision) == (V2, None, V3, 3)
    assert registry.alias_history("dev", "production")[-1].reason == "go"


def test_set_policy_names_the_revision_and_reset_has_a_default_reason(registry: Registry) -> None:
    set_policy(registry, "dev", CANARY, actor="a", reason=None, expected_revision=0)
    with pytest.raises(ConflictError, match="revision 1, not 0"):
        set_policy(registry, "dev", SHADOW, actor="a", reason=None, expected_revision=0)
    assert reset(registry, "dev", actor="a", reason=None).canary is None
    assert reasons(registry, "traffic.changed") == [NO_REASON]
    assert reasons(registry, "traffic.reset") == [NO_REASON]


def test_promote_preview_is_guarded(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "llmship.yaml"
    config.write_text(yaml.safe_dump({"gates": {"require": {"dev": ["eval"]}}}))
    monkeypatch.setenv("LLMSHIP_CONFIG", str(config))
    with pytest.raises(InvalidRequestError, match="no preview is set in dev"):
        promote_preview(registry, "dev", force=False, reason="go", actor="a")
    change(registry, "dev", Changes(preview=V2), actor="a", reason="blue-green")
    with pytest.raises(GateError, match=f"{V2} cannot become production in dev"):
        promote_preview(registry, "dev", force=False, reason="go", actor="a")
    with pytest.raises(GateError):  # the same guard behind `traffic set --promote-preview`
        change(registry, "dev", Changes(), actor="a", reason="go", promote=True)
    assert registry.get_traffic("dev").stable == V1
    promoted = promote_preview(registry, "dev", force=True, reason="incident", actor="ann")
    assert (promoted.stable, promoted.preview) == (V2, None)
    assert registry.alias_history("dev", "production")[-1].reason == "[forced] incident"
    assert [e.actor for e in registry.events(kind="gate.forced")] == ["ann"]
