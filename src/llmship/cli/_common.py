"""What every CLI command shares: settings, the registry, error reporting."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from llmship.errors import LlmshipError
from llmship.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmship.registry import Registry

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``message`` in red on stderr and return the Exit to raise."""
    err_console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True
    )
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn llmship errors into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LlmshipError as exc:
            raise fail(exc.message) from None

    return wrapper


def settings(**overrides: object) -> Settings:
    """Load settings, dropping overrides the user did not give."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


@contextmanager
def open_registry(cfg: Settings) -> Iterator[Registry]:
    """The registry named by the settings, closed afterwards."""
    from llmship.registry import Registry

    registry = Registry.open(cfg.registry_url, home=cfg.home)
    try:
        yield registry
    finally:
        registry.close()


def configure_logging(level: str) -> None:
    """Log lines for long-running processes (serve): time, level, logger, message."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
