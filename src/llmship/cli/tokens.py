"""``llmship tokens``: named API tokens with roles for the gateways' admin API and
dashboard (the token file, ``<home>/tokens.yaml`` by default)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llmship.cli._common import console, err_console, fail, handle_errors, settings
from llmship.cli._help import App

app = App(
    help="Add, list and remove named API tokens (roles: read, operator, admin).",
    no_args_is_help=True,
)


class RoleChoice(str, Enum):
    """The roles a token can have."""

    read = "read"
    operator = "operator"
    admin = "admin"


@app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="Who the token is for, e.g. alice or ci-bot.")],
    role: Annotated[
        RoleChoice,
        typer.Option(
            "--role",
            help="read: reads only; operator: also rollout actions, traffic and flags; "
            "admin: also forces past the gates.",
        ),
    ] = RoleChoice.operator,
) -> None:
    """Make a token for NAME and print it (once: only its SHA-256 is kept). Changes made
    with it are recorded as NAME. Gateways pick it up without a restart."""
    from llmship.gateway.tokens import (
        Role,
        TokenEntry,
        check_name,
        digest,
        new_token,
        read_entries,
        token_file,
        write_entries,
    )

    path = token_file(settings())
    entries = read_entries(path)
    check_name(name)
    if any(e.name == name for e in entries):
        raise fail(f"{name} has a token already: `llmship tokens remove {name}` first")
    token = new_token()
    write_entries(path, [*entries, TokenEntry(name, Role.parse(role.value), digest(token))])
    err_console.print(
        f"token for {escape(name)} ({role.value}) kept in {escape(str(path))}; it is shown "
        "once, here:",
        highlight=False,
    )
    print(token)


@app.command("list")
@handle_errors
def list_() -> None:
    """The named tokens: name and role (never the tokens)."""
    from llmship.gateway.tokens import read_entries, token_file

    path = token_file(settings())
    entries = read_entries(path)
    if not entries:
        console.print(
            f"no named tokens in {escape(str(path))}: `llmship tokens add NAME --role ROLE`",
            highlight=False,
        )
        return
    table = Table("name", "role", "sha256 (first 12)")
    for entry in entries:
        table.add_row(escape(entry.name), entry.role.label, entry.sha256[:12])
    console.print(table)


@app.command("remove")
@handle_errors
def remove(name: Annotated[str, typer.Argument(help="Whose token to remove.")]) -> None:
    """Remove NAME's token: gateways refuse it from their next request on."""
    from llmship.gateway.tokens import read_entries, token_file, write_entries

    path = token_file(settings())
    entries = read_entries(path)
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        known = ", ".join(e.name for e in entries) or "none"
        raise fail(f"no token named {name!r} (named tokens: {known})")
    write_entries(path, kept)
    console.print(f"removed the token of {escape(name)}", highlight=False)
