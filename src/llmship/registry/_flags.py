"""Feature flags in the registry: one row per flag and environment.

Each function takes an open session; the transaction is the caller's.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmship.errors import NotFoundError
from llmship.flags.model import Flag, alternate_name
from llmship.registry import _queries as q
from llmship.registry.tables import FlagRow


def upsert(session: Session, env: str, flag: Flag, *, actor: str, now: datetime) -> None:
    """Create or replace ``flag`` in ``env`` (one statement: safe for concurrent writers)."""
    stmt = q.insert(session, FlagRow).values(
        env=env,
        name=flag.name,
        enabled=flag.enabled,
        percent=flag.percent,
        conditions=json.dumps(flag.conditions, sort_keys=True),
        release=flag.release,
        updated_at=now,
        updated_by=actor,
    )
    excluded = stmt.excluded
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["env", "name"],
            set_={
                column: excluded[column]
                for column in (
                    "enabled",
                    "percent",
                    "conditions",
                    "release",
                    "updated_at",
                    "updated_by",
                )
            },
        )
    )


def flip(session: Session, env: str, name: str, *, actor: str, now: datetime) -> Flag:
    """Flip flag ``name`` of ``env`` (its other spelling when only that one exists), or
    create it on; atomic: the row is locked (PostgreSQL ``FOR UPDATE``; SQLite's write
    transaction holds the whole database), so concurrent flips are never lost."""
    for candidate in (name, alternate_name(name)):
        query = select(FlagRow).where(FlagRow.env == env, FlagRow.name == candidate)
        row = session.scalars(query.with_for_update()).first()
        if row is not None:
            row.enabled = not row.enabled
            row.updated_at, row.updated_by = now, actor
            session.flush()
            return to_flag(row)
    flag = Flag(name=name, enabled=True)
    flag.validate()
    stmt = q.insert(session, FlagRow).values(
        env=env, name=name, enabled=True, percent=flag.percent, conditions="{}",
        release=None, updated_at=now, updated_by=actor,
    )  # fmt: skip
    enabled = FlagRow.__table__.c.enabled
    session.execute(  # created meanwhile by another flip: this one flips it back
        stmt.on_conflict_do_update(
            index_elements=["env", "name"],
            set_={"enabled": ~enabled, "updated_at": now, "updated_by": actor},
        )
    )
    return to_flag(flag_row(session, env, name))


def flag_row(session: Session, env: str, name: str) -> FlagRow:
    """The row of flag ``name`` in ``env``; NotFoundError lists the flags there."""
    row = session.get(FlagRow, (env, name))
    if row is not None:
        return row
    names = list(
        session.scalars(select(FlagRow.name).where(FlagRow.env == env).order_by(FlagRow.name))
    )
    known = f"flags there: {', '.join(names)}" if names else "it has no flags yet"
    raise NotFoundError(f"no flag {name!r} in {env} ({known})", param="name")


def all_flags(session: Session, env: str) -> list[Flag]:
    """The flags of ``env`` by name."""
    stmt = select(FlagRow).where(FlagRow.env == env).order_by(FlagRow.name)
    return [to_flag(row) for row in session.scalars(stmt)]


def to_flag(row: FlagRow) -> Flag:
    """A flag row as a frozen flag."""
    return Flag(
        name=row.name,
        enabled=bool(row.enabled),
        percent=float(row.percent),
        conditions=dict(json.loads(row.conditions or "{}")),
        release=row.release,
    )


def describe(flag: Flag) -> str:
    """One line, e.g. ``on for 25% when plan=pro, routed to chat@1.1.0``."""
    if not flag.enabled:
        return "off"
    text = f"on for {flag.percent:g}%"
    if flag.conditions:
        text += " when " + ", ".join(f"{k}={v}" for k, v in sorted(flag.conditions.items()))
    if flag.release:
        text += f", routed to {flag.release}"
    return text
