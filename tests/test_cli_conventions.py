"""One convention for every command, checked by walking the Typer app, so that a new
command cannot drift from it (see the docstrings of ``llmship.cli._common`` and
``llmship.cli._help``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmship.cli import app
from llmship.cli._help import Command, Group

ROOT = typer.main.get_command(app)


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """Every command below ``command``, hidden ones too, with its path."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, [*path, name])


COMMANDS = {" ".join(["llmship", *path]): (path, c) for path, c in _commands(ROOT, [])}
LEAVES = sorted(name for name, (_, c) in COMMANDS.items() if not hasattr(c, "commands"))
TEMPLATE = re.compile(r"\{[A-Za-z_][\w-]*\}|<[a-z_][\w |-]*>")
"""``{spec}``, ``{SPEC}``, ``<str>``: a template's or a type's leftover, not a placeholder."""
CHOICES = re.compile(r"^\[[\w-]+(\|[\w-]+)+\]$")
"""``[table|json]``: the values themselves, lowercase as typed."""


def _params(name: str) -> list[Any]:
    command = COMMANDS[name][1]
    return list(command.get_params(command.context_class(command, info_name=command.name)))


def _options(name: str) -> Iterator[Any]:
    return (p for p in _params(name) if p.param_type_name == "option")


def _names(option: Any) -> list[str]:
    return [*option.opts, *option.secondary_opts]


def test_the_walk_finds_the_commands() -> None:
    wanted = {"llmship traffic set", "llmship alias set", "llmship rollout start"}
    assert wanted | {"llmship eval list", "llmship models list"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_made_by_the_app_class(name: str) -> None:
    """``llmship.cli._help.App`` makes them; its classes draw placeholders UPPERCASE."""
    assert isinstance(COMMANDS[name][1], (Command, Group)), f"{name}: use App, not typer.Typer"


def test_each_short_option_means_one_long_option_everywhere() -> None:
    meanings: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in LEAVES:
        for option in _options(name):
            longs = [n for n in _names(option) if n.startswith("--")]
            for short in (n for n in _names(option) if re.fullmatch(r"-\w", n)):
                meanings[short]["/".join(longs)].append(name)
    mixed = {short: dict(longs) for short, longs in meanings.items() if len(longs) > 1}
    assert not mixed, f"a short option with more than one meaning: {mixed}"


@pytest.mark.parametrize("name", LEAVES)
def test_r_is_reason_and_n_is_limit(name: str) -> None:
    for option in _options(name):
        names = _names(option)
        for short, long in (("-r", "--reason"), ("-n", "--limit")):
            if short in names:
                assert long in names, f"{name}: {short} is {names}, but {short} means {long} only"
            if long in names:
                assert short in names, f"{name}: {long} without its short form {short}"


@pytest.mark.parametrize("name", LEAVES)
def test_a_reason_is_never_required(name: str) -> None:
    for option in _options(name):
        if "--reason" in _names(option):
            assert not option.required, f"{name}: --reason must be optional"


@pytest.mark.parametrize("name", LEAVES)
def test_placeholders_are_uppercase(name: str) -> None:
    command = COMMANDS[name][1]
    usage = command.collect_usage_pieces(command.context_class(command, info_name=command.name))
    for piece in [*usage, *(str(p.metavar or "") for p in _params(name))]:
        if CHOICES.match(piece):
            continue
        assert piece == piece.upper(), f"{name}: the placeholder {piece!r} is not UPPERCASE"
        assert not TEMPLATE.search(piece), f"{name}: the placeholder {piece!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_no_template_or_type_leftovers(name: str) -> None:
    path = COMMANDS[name][0]
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    leftovers = TEMPLATE.findall(result.output)
    assert not leftovers, f"`{name} --help` shows {leftovers}"


@pytest.mark.parametrize("name", LEAVES)
def test_a_release_filter_is_spelled_release(name: str) -> None:
    """List and show commands filter by ``--release``; older spellings stay, hidden."""
    if name.rsplit(maxsplit=1)[-1] not in ("list", "show", "summary", "history", "status"):
        return
    for option in _options(name):
        for old in ("--name", "--version", "--ref"):
            if old in _names(option):
                assert option.hidden, f"{name}: {old} is shown; the filter is --release"


def test_the_command_line_starts_without_the_heavy_modules() -> None:
    # every command (and the controller) loads llmship.cli: the gateway's app and the
    # eval's numerics are imported by the commands that use them, not on start-up
    code = (
        "import sys, llmship.cli; "
        "print(sorted(m for m in ('llmship.gateway.app', 'numpy', 'nltk', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
