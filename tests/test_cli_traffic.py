"""`llmship traffic`, `llmship feedback` and `llmship flags` through the real command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from _cli import Run, cli_runner
from _registry import chat_registry
from llmship.registry import QueryRecord, Registry
from llmship.registry.records import NO_REASON


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """The registry the CLI uses: chat@1.0.0 (production in dev), 1.1.0 and 2.0.0."""
    with chat_registry(tmp_path / "state" / "registry.db", ("1.0.0", "1.1.0", "2.0.0")) as reg:
        yield reg


@pytest.fixture
def run(cli_home: Path, registry: Registry) -> Run:
    """Run `llmship ...` in conftest's clean ``cli_home``, over the registry above."""
    return cli_runner()


def error(run: Run, *args: str) -> str:
    """The one red line a failing command prints (exit status 2)."""
    result = run(*args, code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0].removeprefix("error: ")


def policy(run: Run, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run("traffic", "show", "--format", "json", *extra).output)
    return data


# -- traffic ------------------------------------------------------------------------


def test_show_an_env_without_a_policy(run: Run) -> None:
    table = run("traffic", "show").output
    assert "traffic in dev (revision 0)" in table
    assert "stable (production)" in table
    assert "chat@1.0.0" in table
    assert "100%" in table
    assert policy(run) == {
        "env": "dev",
        "stable": "chat@1.0.0",
        "canary": None,
        "preview": None,
        "experiment": None,
        "shadow": None,
        "revision": 0,
    }
    assert policy(run, "--env", "prod")["stable"] is None


def test_canary_and_shadow_combine_and_weight_changes_the_canary(
    run: Run, registry: Registry
) -> None:
    out = run(
        "traffic",
        "set",
        "--canary",
        "chat@1.1.0",
        "--weight",
        "20",
        "--shadow",
        "chat@2.0.0",
        "--percent",
        "5",
        "--reason",
        "try 1.1.0",
    ).output
    assert "traffic in dev (revision 1)" in out
    assert "chat@1.1.0" in out and "20%" in out and "80%" in out
    assert "5% mirrored" in out
    run("traffic", "set", "--weight", "40", "--reason", "more")
    data = policy(run)
    assert data["canary"] == {"release": "chat@1.1.0", "weight": 40.0}
    assert data["shadow"] == {"release": "chat@2.0.0", "percent": 5.0}
    assert data["revision"] == 2
    run("traffic", "set", "--percent", "50", "--reason", "mirror more")
    assert policy(run)["shadow"]["percent"] == 50.0
    run("traffic", "set", "--canary", "chat@2.0.0", "--reason", "another candidate")
    assert policy(run)["canary"] == {"release": "chat@2.0.0", "weight": 40.0}
    run("traffic", "set", "--canary", "chat@1.1.0", "--reason", "back to 1.1.0")
    run("traffic", "set", "--weight", "0", "--reason", "stop")
    data = policy(run)
    assert (data["canary"], data["shadow"]["percent"]) == (None, 50.0)
    run("traffic", "set", "--canary", "chat@1.1.0", "--weight", "10", "-r", "again")
    run("traffic", "set", "--canary", "none", "--shadow", "none", "-r", "done")
    data = policy(run)
    assert (data["canary"], data["shadow"], data["revision"]) == (None, None, 8)
    [event, *_] = registry.events(kind="traffic.changed")
    assert (event.actor, event.data["reason"]) == ("tester", "done")


def test_experiment_variants(run: Run) -> None:
    run(
        "traffic",
        "set",
        "--experiment",
        "prompt-ab",
        "--variants",
        "A=chat@1.0.0:50, B=chat@2.0.0:50",
        "--reason",
        "a/b",
    )
    data = policy(run)
    assert data["experiment"] == {
        "name": "prompt-ab",
        "variants": [
            {"name": "A", "release": "chat@1.0.0", "weight": 50.0},
            {"name": "B", "release": "chat@2.0.0", "weight": 50.0},
        ],
    }
    run("traffic", "set", "--variants", "A=chat@1.0.0:90,B=chat@2.0.0:10", "-r", "less B")
    data = policy(run)
    assert data["experiment"]["name"] == "prompt-ab"
    assert [v["weight"] for v in data["experiment"]["variants"]] == [90.0, 10.0]
    table = run("traffic", "show").output
    assert "prompt-ab: A" in table and "prompt-ab: B" in table
    run("traffic", "set", "--experiment", "none", "-r", "over")
    assert policy(run)["experiment"] is None


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("A=chat@1.0.0", "--variants: write NAME=RELEASE:WEIGHT,... (e.g. "),
        ("A=chat@1.0.0:50,B", "got 'B'"),
        ("chat@1.0.0:50,B=chat@2.0.0:50", "got 'chat@1.0.0:50'"),
        ("A=chat@1.0.0:half,B=chat@2.0.0:50", "the weight 'half' of A is not a number"),
        ("A=chat@1.0.0:60,B=chat@2.0.0:50", "experiment weights add up to 110, not 100"),
        ("A=chat@1.0.0:100", "an experiment needs at least two variants"),
        ("A=chat@1.0.0:50,B=chat@9.0.0:50", "variant B: no release chat@9.0.0"),
    ],
)
def test_variants_are_parsed_strictly(run: Run, variants: str, message: str) -> None:
    line = error(run, "traffic", "set", "--experiment", "x", "--variants", variants, "-r", "r")
    assert message in line
    assert policy(run)["revision"] == 0


def test_preview_then_promote(run: Run, registry: Registry) -> None:
    run("traffic", "set", "--preview", "chat@2.0.0", "--reason", "look at it")
    assert "on request" in run("traffic", "show").output
    out = run("traffic", "set", "--promote-preview", "--reason", "it is better").output
    assert "revision 2" in out
    data = policy(run)
    assert (data["stable"], data["preview"]) == ("chat@2.0.0", None)
    last = registry.alias_history("dev", "production")[-1]
    assert (last.to_ref, last.actor, last.reason) == ("chat@2.0.0", "tester", "it is better")
    assert "no preview is set in dev" in error(
        run, "traffic", "set", "--promote-preview", "-r", "again"
    )


def test_reset_alone_and_reset_first(run: Run, registry: Registry) -> None:
    run(
        "traffic",
        "set",
        "--canary",
        "chat@1.1.0",
        "--weight",
        "5",
        "--preview",
        "chat@2.0.0",
        "-r",
        "a",
    )
    run("traffic", "set", "--reset", "-r", "clean")
    data = policy(run)
    assert (data["canary"], data["preview"], data["revision"]) == (None, None, 2)
    assert registry.events(kind="traffic.reset")[0].data["reason"] == "clean"
    run(
        "traffic",
        "set",
        "--canary",
        "chat@1.1.0",
        "--weight",
        "5",
        "--preview",
        "chat@2.0.0",
        "-r",
        "b",
    )
    run("traffic", "set", "--reset", "--shadow", "chat@2.0.0", "--percent", "10", "-r", "c")
    data = policy(run)
    assert (data["canary"], data["preview"]) == (None, None)
    assert data["shadow"] == {"release": "chat@2.0.0", "percent": 10.0}
    assert data["revision"] == 4  # one revision for the reset and the shadow together


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to change: give --canary"),
        (("--weight", "10"), "no canary runs in dev: give --canary NAME@VERSION too"),
        (("--percent", "10"), "no shadow runs in dev"),
        (("--canary", "chat@1.1.0"), "give --weight N too"),
        (("--shadow", "chat@1.1.0"), "give --percent N too"),
        (("--canary", "none", "--weight", "5"), "--canary none ends the canary"),
        (("--canary", "chat@1.1.0", "--weight", "120"), "canary weight must be between 0 and 100"),
        (("--canary", "chat@1.0.0", "--weight", "5"), "already the stable release"),
        (("--canary", "chat@9.9.9", "--weight", "5"), "canary: no release chat@9.9.9"),
        (("--experiment", "x"), "--experiment x: give its variants too"),
        (("--variants", "A=chat@1.0.0:50,B=chat@2.0.0:50"), "give --experiment NAME too"),
        (("--promote-preview", "--reset"), "leave out --reset and --preview"),
        (("--env", "Prod", "--reset"), "invalid settings"),
    ],
)
def test_traffic_set_errors(run: Run, args: tuple[str, ...], message: str) -> None:
    reason = () if "--reason" in args else ("--reason", "r")
    assert message in error(run, "traffic", "set", *args, *reason)
    assert policy(run)["revision"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ("--canary", "chat@1.1.0", "--weight", "10"),
        ("--shadow", "chat@2.0.0", "--percent", "5"),
        ("--reset",),
        ("--reason", " ", "--reset"),  # a blank reason is none
    ],
)
def test_the_reason_is_optional(run: Run, registry: Registry, args: tuple[str, ...]) -> None:
    run("traffic", "set", *args)
    event = registry.events(limit=1)[0]
    assert event.kind.startswith("traffic."), event
    assert event.message.endswith("(no reason given)"), event.message
    assert event.data["reason"] == NO_REASON


def test_promote_preview_without_a_reason(run: Run, registry: Registry) -> None:
    run("traffic", "set", "--preview", "chat@1.1.0")
    run("traffic", "set", "--promote-preview")
    assert registry.alias_history("dev", "production")[-1].reason == NO_REASON
    assert policy(run)["stable"] == "chat@1.1.0"


# -- feedback -------------------------------------------------------------------------


def test_feedback_summary(run: Run, registry: Registry) -> None:
    assert "no feedback in dev yet" in run("feedback", "summary").output
    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    registry.record_queries(
        [QueryRecord(f"a{i}", "dev", "chat@1.0.0", "stable", "/predict", 200, at) for i in range(4)]
        + [QueryRecord("b0", "dev", "chat@1.1.0", "canary", "/predict", 200, at)]
    )
    for i, (rating, thumbs) in enumerate([(5, "up"), (4, "up"), (4, "up"), (2, "down")]):
        registry.add_feedback(f"a{i}", rating=rating, thumbs=thumbs)
    registry.add_feedback("b0", thumbs="down")

    table = run("feedback", "summary").output
    assert "feedback in dev" in table
    assert "3.75" in table and "75%" in table
    data = json.loads(run("feedback", "summary", "--format", "json").output)
    assert data == [
        {
            "ref": "chat@1.0.0",
            "ratings": 4,
            "mean_rating": 3.75,
            "thumbs_up": 3,
            "thumbs_down": 1,
            "thumbs_up_rate": 0.75,
        },
        {
            "ref": "chat@1.1.0",
            "ratings": 0,
            "mean_rating": None,
            "thumbs_up": 0,
            "thumbs_down": 1,
            "thumbs_up_rate": 0.0,
        },
    ]
    only = json.loads(
        run("feedback", "summary", "--release", "chat@1.1.0", "--format", "json").output
    )
    assert [row["ref"] for row in only] == ["chat@1.1.0"]
    production = json.loads(
        run("feedback", "summary", "--release", "production", "-f", "json").output
    )
    assert [row["ref"] for row in production] == ["chat@1.0.0"]
    every_version = json.loads(run("feedback", "summary", "--release", "chat", "-f", "json").output)
    assert every_version == data
    assert run("feedback", "summary", "--env", "prod", "--format", "json").output.strip() == "[]"
    assert "nor is it the name of a registered release" in error(
        run, "feedback", "summary", "--release", "nope"
    )
    # the old spelling still works, with a note on stderr
    note, _, rows = run(
        "feedback", "summary", "--version", "chat@1.1.0", "-f", "json"
    ).output.partition("\n")
    assert note == "--version is deprecated: use --release"
    assert [row["ref"] for row in json.loads(rows)] == ["chat@1.1.0"]
    assert "give only --release" in error(
        run, "feedback", "summary", "--version", "chat@1.1.0", "--release", "chat@1.1.0"
    )


# -- flags ----------------------------------------------------------------------------


def flags(run: Run) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(run("flags", "list", "--format", "json").output)
    return data


def test_flags_set_keeps_what_is_not_given(run: Run, registry: Registry) -> None:
    assert "no flags in dev yet" in run("flags", "list").output
    out = run(
        "flags",
        "set",
        "new-prompt",
        "--on",
        "--percent",
        "25",
        "--when",
        "plan=pro",
        "--when",
        "region=eu",
        "--release",
        "chat@1.1.0",
    ).output
    assert out.strip() == (
        "flag new-prompt in dev: on for 25% of users when plan=pro, region=eu, routed to chat@1.1.0"
    )
    run("flags", "set", "new-prompt", "--percent", "50")
    [flag] = flags(run)
    assert flag == {
        "name": "new-prompt",
        "enabled": True,
        "percent": 50.0,
        "conditions": {"plan": "pro", "region": "eu"},
        "release": "chat@1.1.0",
    }
    run("flags", "set", "new-prompt", "--off", "--when", "none", "--release", "none")
    [flag] = flags(run)
    assert (flag["enabled"], flag["percent"], flag["conditions"], flag["release"]) == (
        False,
        50.0,
        {},
        None,
    )
    run("flags", "set", "dark-mode", "--on")
    table = run("flags", "list").output
    assert "dark-mode" in table and "new-prompt" in table and "off" in table
    assert [f["name"] for f in flags(run)] == ["dark-mode", "new-prompt"]
    assert run("flags", "delete", "dark-mode").output.strip() == "deleted flag dark-mode in dev"
    assert [f["name"] for f in flags(run)] == ["new-prompt"]
    assert registry.events(kind="flag.deleted")[0].actor == "tester"
    assert run("flags", "list", "--env", "prod", "--format", "json").output.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "fresh"), "flag fresh is new in dev: give --on or --off"),
        (("set", "f", "--on", "--when", "plan"), "--when 'plan': write ATTRIBUTE=VALUE"),
        (("set", "f", "--on", "--percent", "101"), "percent must be between 0 and 100"),
        (("set", "Bad", "--on"), "flag name 'Bad'"),
        (("set", "f", "--on", "--release", "chat@7.0.0"), "flag f: no release chat@7.0.0"),
        (("delete", "nope"), "no flag 'nope' in dev (it has no flags yet)"),
    ],
)
def test_flags_errors(run: Run, args: tuple[str, ...], message: str) -> None:
    assert message in error(run, "flags", *args)
    assert flags(run) == []


# -- help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("traffic",),
        ("traffic", "show"),
        ("traffic", "set"),
        ("feedback",),
        ("feedback", "summary"),
        ("flags",),
        ("flags", "set"),
        ("flags", "list"),
        ("flags", "delete"),
    ],
)
def test_every_command_has_help(run: Run, command: tuple[str, ...]) -> None:
    out = run(*command, "--help").output
    assert "Usage:" in out
    assert len(out.splitlines()) > 4
