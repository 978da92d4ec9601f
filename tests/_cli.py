"""The command line run in-process (typer's CliRunner), for the ``run`` fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from typer.testing import CliRunner

from llmship.cli import app


class Result(Protocol):
    """What a CLI run leaves: its exit code and its output (stdout and stderr)."""

    @property
    def output(self) -> str: ...

    @property
    def exit_code(self) -> int: ...


Run = Callable[..., Result]
"""``run(*args, code=0)``: run ``llmship ARGS`` and check its exit status."""


def cli_runner() -> Run:
    """Run ``llmship ARGS`` in this process; fail unless it exits with ``code``."""
    runner = CliRunner()

    def _run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    return _run
