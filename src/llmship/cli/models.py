"""``llmship models``: register, list and show releases."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmship.cli._common import (
    ReleaseOption,
    console,
    deprecated,
    handle_errors,
    open_registry,
    release_filter,
    settings,
)
from llmship.cli._help import App
from llmship.release.spec import load_spec

app = App(
    help="Register, list and show releases (immutable, versioned model specs).",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        help="Environment whose aliases to use (default: LLMSHIP_ENV or dev).",
    ),
]


class ListFormat(str, Enum):
    """Output formats of `models list`."""

    table = "table"
    json = "json"


class ShowFormat(str, Enum):
    """Output formats of `models show`."""

    yaml = "yaml"
    json = "json"


@app.command("register")
@handle_errors
def register(
    spec_file: Annotated[
        Path,
        typer.Argument(
            metavar="SPEC", help="Release spec file (YAML or JSON), e.g. models/chat-1.0.0.yaml."
        ),
    ],
) -> None:
    """Register a release from its spec file SPEC; the weights' sha256 is recorded.

    Registering the same version again with identical content is harmless; with
    different content it fails: bump the version instead.
    """
    cfg = settings()
    spec = load_spec(spec_file)
    with open_registry(cfg) as registry:
        record, created = registry.register(spec, actor=cfg.actor)
    if not created:
        typer.echo(f"{record.ref} already registered with identical content")
        return
    detail = f"sha256 {record.digest[:12]}"
    if record.spec.model.sha256:
        detail += f", weights sha256 {record.spec.model.sha256[:12]}"
    typer.echo(f"registered {record.ref} ({detail})")


@app.command("list")
@handle_errors
def list_(
    release: ReleaseOption = None,
    output: Annotated[
        ListFormat, typer.Option("--format", "-f", help="table or json.")
    ] = ListFormat.table,
    env: EnvOption = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", hidden=True, help="Deprecated: use --release."),
    ] = None,
) -> None:
    """List releases by name, newest version first, with the aliases that point at them."""
    release = deprecated("--name", "--release", name, release)
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        chosen = release_filter(registry, release, cfg.env) if release else None
        if chosen is None or chosen.ref is None:
            releases = registry.list_releases(chosen.name if chosen else None)
        else:
            releases = [registry.resolve(chosen.ref, env=cfg.env)]
        aliases: dict[str, list[str]] = {}
        for alias in registry.list_aliases(cfg.env):
            aliases.setdefault(alias.ref, []).append(alias.alias)
    if output is ListFormat.json:
        rows: list[dict[str, Any]] = [
            {
                "name": r.name,
                "version": r.version,
                "backend": r.backend,
                "digest": r.digest,
                "aliases": aliases.get(r.ref, []),
                "created_at": r.created_at.isoformat(),
                "created_by": r.created_by,
            }
            for r in releases
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not releases:
        typer.echo("no releases yet: llmship models register SPEC")
        return
    table = Table(title=f"releases (aliases in {cfg.env})", title_justify="left")
    for column in ("name", "version", "backend", "aliases", "created"):
        table.add_column(column, overflow="fold")
    for r in releases:
        table.add_row(
            r.name,
            r.version,
            r.backend,
            ", ".join(aliases.get(r.ref, [])),
            escape(f"{r.created_at:%Y-%m-%d %H:%M} UTC by {r.created_by}"),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    ref: Annotated[
        str,
        typer.Argument(metavar="REF", help="NAME@VERSION, or an alias such as production."),
    ],
    output: Annotated[
        ShowFormat,
        typer.Option("--format", "-f", help="yaml (accepted by `models register`) or json."),
    ] = ShowFormat.yaml,
    env: EnvOption = None,
) -> None:
    """Print the spec of a release, as registered (sha256 included)."""
    cfg = settings(env=env)
    with open_registry(cfg) as registry:
        record = registry.resolve(ref, env=cfg.env)
    if output is ShowFormat.json:
        typer.echo(json.dumps(record.spec.to_dict(), indent=2))
    else:
        typer.echo(record.spec.to_yaml(), nl=False)
