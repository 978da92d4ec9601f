"""What every CLI command shares: settings, the registry, error reporting, and the
options that mean the same everywhere.

Conventions of every command (``tests/test_cli_conventions.py`` checks them):

- ``-r`` is ``--reason`` and nothing else; a reason is optional and recorded as
  :data:`~llmship.registry.records.NO_REASON` when left out, except for traffic and
  alias changes in an environment that requires one (``prod`` by default:
  ``environments: NAME: reason:``), see :func:`env_reason`.
- ``-n`` is ``--limit`` and nothing else.
- A list or show command filters releases with ``--release REF``: NAME@VERSION
  or an alias (that release) or NAME (every version); see :func:`release_filter`.
- Placeholders in help and messages are UPPERCASE: ``NAME@VERSION``, ``SPEC``,
  ``TEXT``, ``DURATION``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from llmship.errors import (
    ConflictError,
    InvalidRequestError,
    LlmshipError,
    NotFoundError,
    PermissionDeniedError,
)
from llmship.registry.records import NO_REASON, given_reason
from llmship.release.spec import parse_ref
from llmship.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmship.registry import Registry

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USAGE = 2
EXIT_REFUSED = 1
"""A well-formed request refused as things stand (a promotion's gates, a decided approval)."""


class Format(str, Enum):
    """``--format`` of the commands that list or show records: a table, or JSON."""

    table = "table"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", "-f", help="table or json.")]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``message`` in red on stderr and return the Exit to raise."""
    err_console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True
    )
    return typer.Exit(code)


def duration(option: str, text: str) -> float:
    """An option's duration (500ms, 1s, 5m) in seconds; exit 2 naming the option when it
    is not one or not above 0s."""
    from llmship.analysis.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise fail(f"{option} {text!r}: {exc}") from None
    if seconds <= 0:
        raise fail(f"{option} must be longer than 0s, e.g. 1s")
    return seconds


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn llmship errors into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LlmshipError as exc:
            raise fail(exc.message) from None

    return wrapper


def handle_refusals(func: Callable[P, R]) -> Callable[P, R]:
    """As :func:`handle_errors`, but a refusal as things stand (ConflictError: gates
    missing, decided already; PermissionDeniedError) exits :data:`EXIT_REFUSED`, and
    bad input (an unknown name, id or environment, an invalid value) exits 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ConflictError, PermissionDeniedError) as exc:
            raise fail(exc.message, code=EXIT_REFUSED) from None
        except LlmshipError as exc:
            raise fail(exc.message) from None

    return wrapper


def settings(**overrides: object) -> Settings:
    """Load settings, dropping overrides the user did not give."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def with_env_port(cfg: Settings) -> Settings:
    """``cfg`` with its environment's ``gateway_port`` (``environments: ENV:
    gateway_port:``; dev 8080, staging 8081, prod 8082 by default) when no ``--port``,
    ``LLMSHIP_GATEWAY_PORT`` or ``gateway_port:`` setting names one."""
    if "gateway_port" in cfg.model_fields_set:
        return cfg
    from llmship.environments import load_environments

    port = load_environments().get(cfg.env).gateway_port
    return cfg if port is None else cfg.model_copy(update={"gateway_port": port})


@contextmanager
def open_registry(cfg: Settings) -> Iterator[Registry]:
    """The registry named by the settings, closed afterwards."""
    from llmship.registry import Registry

    registry = Registry.open(cfg.registry_url, home=cfg.home)
    try:
        yield registry
    finally:
        registry.close()


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log lines for long-running processes (serve, gateway, controller, up), in the
    ``log_format`` ``fmt``: see :mod:`llmship.logs`."""
    from llmship import logs

    logs.configure(level, fmt)


# -- options shared by every command ---------------------------------------------------


def reason_option(recorded: str) -> Any:
    """``--reason``/``-r TEXT``, optional; ``recorded`` says where it is kept."""
    return typer.Option(
        "--reason",
        "-r",
        metavar="TEXT",
        help=f"Why ({recorded}; default: '{NO_REASON}').",
        show_default=False,
    )


def env_reason(env: str, reason: str | None, doing: str) -> str:
    """The reason to record for ``doing`` in ``env``: the one given, else
    :data:`NO_REASON`; InvalidRequestError (exit 2, nothing changed) when ``env``
    requires a reason (``environments: ENV: reason: required``; ``prod`` by default)
    and none was given."""
    if (reason or "").strip():
        return given_reason(reason)
    from llmship.environments import load_environments

    if load_environments().get(env).needs_reason:
        raise InvalidRequestError(
            f"{doing} in {env} needs --reason TEXT (why; it is recorded): {env} requires a "
            f"reason (environments.{env}.reason in llmship.yaml: required, the default of "
            "prod; optional elsewhere); nothing changed",
            param="reason",
        )
    return NO_REASON


ReleaseOption = Annotated[
    str | None,
    typer.Option(
        "--release",
        metavar="REF",
        help="Only this release: NAME@VERSION or an alias (one release), or NAME (every version).",
        show_default=False,
    ),
]


def deprecated(old: str, new: str, old_value: str | None, new_value: str | None) -> str | None:
    """The value of option ``new``, or of ``old``, its deprecated spelling (hidden from
    ``--help``, kept so that no script breaks), with a note on stderr."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise fail(f"{old} is the old spelling of {new}: give only {new}")
    err_console.print(f"[yellow]{old} is deprecated: use {new}[/]", highlight=False)
    return old_value


@dataclass(frozen=True)
class ReleaseFilter:
    """What ``--release`` selects: one release (``ref``), or every version of ``name``."""

    name: str
    ref: str | None = None

    def matches(self, ref: str) -> bool:
        """True when the release ``ref`` (NAME@VERSION) is selected."""
        if self.ref is not None:
            return ref == self.ref
        return ref.partition("@")[0] == self.name

    def __str__(self) -> str:
        return self.ref or self.name


def release_filter(registry: Registry, text: str, env: str) -> ReleaseFilter:
    """``--release TEXT``: NAME@VERSION or an alias of ``env`` names one release
    (``Registry.resolve``, as ``eval --candidate`` does); else TEXT is a release
    name (every version). NotFoundError when it is none of these."""
    try:
        record = registry.resolve(text, env=env)
    except NotFoundError as exc:
        if parse_ref(text) is not None:
            raise
        if not registry.list_releases(text):
            raise NotFoundError(
                f"--release {text}: {exc.message}; nor is it the name of a registered "
                "release (`llmship models list` shows them)",
                param="release",
            ) from None
        return ReleaseFilter(name=text)
    return ReleaseFilter(name=record.name, ref=record.ref)
