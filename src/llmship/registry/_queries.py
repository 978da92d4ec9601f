"""Queries the registry's methods share, and rows turned into records.

Each function takes an open session; the transaction is the caller's.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from llmship.errors import NotFoundError, SpecError
from llmship.registry.records import AliasMove, Event, GateRun, ReleaseRecord
from llmship.registry.tables import (
    AliasHistoryRow,
    AliasRow,
    Base,
    EventRow,
    GateRunRow,
    ReleaseRow,
)
from llmship.release.semver import Version
from llmship.release.spec import ReleaseSpec, parse_ref


def release_row(session: Session, name: str, version: str) -> ReleaseRow | None:
    """The row of ``name@version``, or None."""
    stmt = select(ReleaseRow).where(ReleaseRow.name == name, ReleaseRow.version == version)
    return session.scalars(stmt).one_or_none()


def get_release(session: Session, name: str, version: str) -> ReleaseRecord:
    """The release ``name@version``; NotFoundError says which versions and names exist."""
    row = release_row(session, name, version)
    if row is not None:
        return to_release(row)
    versions = list(session.scalars(select(ReleaseRow.version).where(ReleaseRow.name == name)))
    if versions:
        known = ", ".join(sorted(versions, key=Version.parse, reverse=True))
        raise NotFoundError(f"no release {name}@{version}; known versions of {name}: {known}")
    names = sorted(set(session.scalars(select(ReleaseRow.name))))
    if names:
        raise NotFoundError(
            f"no release named {name!r} is registered (known names: {', '.join(names)})"
        )
    raise NotFoundError(
        f"no release {name}@{version}: the registry is empty "
        "(register one with `llmship models register FILE`)"
    )


def alias_target(session: Session, env: str, alias: str) -> ReleaseRow | None:
    """The row ``alias`` of ``env`` points at, or None."""
    stmt = (
        select(ReleaseRow)
        .join(AliasRow, AliasRow.release_id == ReleaseRow.id)
        .where(AliasRow.env == env, AliasRow.alias == alias)
    )
    return session.scalars(stmt).one_or_none()


def resolve(session: Session, ref: str, env: str) -> ReleaseRecord:
    """``NAME@VERSION`` or an alias of ``env``; NotFoundError lists the aliases there."""
    parsed = parse_ref(ref)
    if parsed is not None:
        return get_release(session, *parsed)
    row = alias_target(session, env, ref)
    if row is not None:
        return to_release(row)
    aliases = list(session.scalars(select(AliasRow.alias).where(AliasRow.env == env)))
    where = (
        f"aliases there: {', '.join(sorted(aliases))}"
        if aliases
        else "it has no aliases yet; set one with `llmship alias set ALIAS NAME@VERSION`"
    )
    raise NotFoundError(
        f"{ref!r} is neither NAME@VERSION nor an alias in environment {env!r} ({where})"
    )


def canonical_ref(session: Session, ref: str, env: str, *, role: str) -> str:
    """``NAME@VERSION`` of the registered release ``ref`` names (an alias is resolved).

    NotFoundError starts with ``role`` (``canary``, ``flag release``, ...), so the
    message says which part of a request named the unknown release.
    """
    try:
        return resolve(session, ref, env).ref
    except NotFoundError as exc:
        raise NotFoundError(f"{role}: {exc.message}", param=role) from None


def insert(session: Session, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the session's dialect, which has ``on_conflict_do_*`` (an upsert)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the registry runs on SQLite or PostgreSQL, not {name}")


def history(session: Session, env: str, alias: str, *, last_only: bool = False) -> list[AliasMove]:
    """The moves of ``alias`` in ``env``, oldest first (or only the newest one)."""
    src = aliased(ReleaseRow)
    dst = aliased(ReleaseRow)
    stmt = (
        select(AliasHistoryRow, src.name, src.version, dst.name, dst.version)
        .outerjoin(src, AliasHistoryRow.from_release_id == src.id)
        .join(dst, AliasHistoryRow.to_release_id == dst.id)
        .where(AliasHistoryRow.env == env, AliasHistoryRow.alias == alias)
    )
    if last_only:
        stmt = stmt.order_by(AliasHistoryRow.id.desc()).limit(1)
    else:
        stmt = stmt.order_by(AliasHistoryRow.id)
    return [
        AliasMove(
            id=row.id,
            env=row.env,
            alias=row.alias,
            from_ref=f"{from_name}@{from_version}" if from_name is not None else None,
            to_ref=f"{to_name}@{to_version}",
            actor=row.actor,
            reason=row.reason,
            at=row.at,
        )
        for row, from_name, from_version, to_name, to_version in session.execute(stmt)
    ]


# -- rows to records -------------------------------------------------------------


def to_release(row: ReleaseRow) -> ReleaseRecord:
    """A release row as a frozen record, its spec validated again."""
    try:
        spec = ReleaseSpec.model_validate(json.loads(row.spec))
    except (ValueError, ValidationError) as exc:
        raise SpecError(
            f"the registry holds a spec for {row.name}@{row.version} that this llmship "
            f"cannot read: {exc}"
        ) from exc
    return ReleaseRecord(
        id=row.id,
        spec=spec,
        digest=row.digest,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def to_event(row: EventRow) -> Event:
    """An event row as a frozen record."""
    return Event(
        id=row.id,
        at=row.at,
        actor=row.actor,
        kind=row.kind,
        subject=row.subject,
        message=row.message,
        data=json.loads(row.data) if row.data else {},
    )


def storable_id(value: int) -> bool:
    """Whether ``value`` can be a row's id (a positive 64-bit integer): a larger one is
    no row's, and would overflow the database's integer."""
    return 0 < value < 2**63


def latest_gate_runs(session: Session, ref: str) -> dict[str, GateRun]:
    """The newest gate run of each kind for the release ``ref`` (``NAME@VERSION``)."""
    newest = (
        select(func.max(GateRunRow.id))
        .where(GateRunRow.ref == ref)
        .group_by(GateRunRow.kind)
        .scalar_subquery()
    )
    stmt = select(GateRunRow).where(GateRunRow.id.in_(newest)).order_by(GateRunRow.kind)
    return {row.kind: to_gate_run(row) for row in session.scalars(stmt)}


def to_gate_run(row: GateRunRow, *, with_report: bool = True) -> GateRun:
    """A gate run row as a frozen record (its report left out unless ``with_report``)."""
    return GateRun(
        id=row.id,
        kind=row.kind,
        ref=row.ref,
        baseline_ref=row.baseline_ref,
        env=row.env,
        passed=bool(row.passed),
        forced=bool(row.forced),
        summary=json.loads(row.summary),
        report=json.loads(row.report) if with_report else {},
        created_at=row.created_at,
        created_by=row.created_by,
    )
