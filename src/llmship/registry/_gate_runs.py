"""The registry's methods for release gates: gate runs (eval, load test) and the
output cache of ``llmship eval``. They are methods of ``Registry`` (which inherits
them).

A gate run is stored against the release it judged, with a small ``summary``
(headline numbers and verdicts) beside the whole JSON ``report``; each one is also
an event ``gate.<kind>``. The output cache maps the sha256 of what produced a
generation (release content, input, parameters) to its result, so a re-run with
nothing changed generates nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, defer

from llmship.errors import InvalidRequestError, NotFoundError, SpecError
from llmship.registry import _queries as q
from llmship.registry._base import Store, check_env, logger
from llmship.registry.records import GateRun
from llmship.registry.tables import REF_LENGTH, GateRunRow, OutputCacheRow
from llmship.release.spec import parse_ref

GATE_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
KEY_LENGTH = 64
CACHE_READ_BATCH = 500
"""Keys per ``IN (...)``: below SQLite's historical limit of 999 bound parameters."""
CACHE_WRITE_BATCH = 200
"""Rows per upsert: 4 columns each stays below that limit too."""


class GateMethods(Store):
    """Gate runs and the eval output cache (part of ``Registry``)."""

    # -- gate runs -----------------------------------------------------------

    def record_gate_run(
        self,
        kind: str,
        ref: str,
        *,
        env: str,
        passed: bool,
        summary: dict[str, Any],
        report: dict[str, Any],
        actor: str,
        baseline_ref: str | None = None,
        forced: bool = False,
        error: str | None = None,
    ) -> GateRun:
        """Store a gate run of ``kind`` (``eval``, ``loadtest``) against the release ``ref``.

        ``ref`` must name a registered release (``NAME@VERSION``); ``summary`` is
        kept small (it is what lists show), ``report`` is the whole JSON report.
        ``forced`` records that a person overrode the gate; ``error`` that the run
        checked nothing (it is stored as not passed, with the error in its summary, and
        satisfies no requirement). An event
        ``gate.<kind>`` with ``{"passed", "run"}`` is recorded in the same
        transaction.
        """
        _check_kind(kind)
        check_env(env)
        if error is not None:
            passed, summary = False, {**summary, "error": error}
        normal = _normal_ref(ref, "ref")
        baseline = _normal_ref(baseline_ref, "baseline_ref") if baseline_ref else None
        summary_text = _dumps(summary, "summary")
        report_text = _dumps(report, "report")
        with self._write() as session:
            release = q.get_release(session, *_split(normal))
            now = self._now()
            row = GateRunRow(
                kind=kind,
                release_id=release.id,
                ref=release.ref,
                baseline_ref=baseline,
                env=env,
                passed=bool(passed),
                forced=bool(forced),
                summary=summary_text,
                report=report_text,
                created_at=now,
                created_by=actor,
            )
            session.add(row)
            session.flush()
            verdict = "passed" if passed else "failed"
            if error is not None:
                verdict = f"error: {error}"
            if forced:
                verdict += " (forced)"
            against = f" against {baseline}" if baseline else ""
            self._add_event(
                session,
                kind=f"gate.{kind}",
                subject=release.ref,
                message=f"{kind} gate of {release.ref}{against} in {env}: {verdict} (run {row.id})",
                actor=actor,
                data={
                    "passed": bool(passed),
                    "run": row.id,
                    "forced": bool(forced),
                    "error": error,
                    "env": env,
                    "baseline": baseline,
                },
            )
            run = _to_gate_run(row)
        logger.info("gate %s of %s: %s (run %d) by %s", kind, run.ref, verdict, run.id, actor)
        return run

    def get_gate_run(self, run_id: int) -> GateRun:
        """The gate run ``run_id``; NotFoundError when there is none."""
        with self._read() as session:
            row = session.get(GateRunRow, run_id) if q.storable_id(run_id) else None
            if row is None:
                raise NotFoundError(
                    f"no gate run {run_id}: list them with `llmship eval list`", param="run"
                )
            return _to_gate_run(row)

    def list_gate_runs(
        self,
        *,
        kind: str | None = None,
        ref: str | None = None,
        limit: int = 50,
        with_reports: bool = True,
    ) -> list[GateRun]:
        """The latest ``limit`` gate runs (of ``kind``, of ``ref``), newest first.

        With ``with_reports=False`` the (possibly large) reports are not read and
        each run's ``report`` is empty.
        """
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", param="limit")
        stmt = select(GateRunRow).order_by(GateRunRow.id.desc()).limit(limit)
        if kind is not None:
            _check_kind(kind)
            stmt = stmt.where(GateRunRow.kind == kind)
        if ref is not None:
            stmt = stmt.where(GateRunRow.ref == _normal_ref(ref, "ref"))
        if not with_reports:
            stmt = stmt.options(defer(GateRunRow.report))
        with self._read() as session:
            return [_to_gate_run(row, with_report=with_reports) for row in session.scalars(stmt)]

    def page_gate_runs(
        self,
        *,
        kind: str | None = None,
        ref: str | None = None,
        env: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[GateRun], int]:
        """One page of the gate runs (of ``kind``, of ``ref``, in ``env``), newest first,
        and how many there are in all; the reports are not read (each ``report`` is empty)."""
        if limit < 1 or offset < 0:
            raise InvalidRequestError("limit must be at least 1, offset at least 0", param="limit")
        conditions = []
        if kind is not None:
            _check_kind(kind)
            conditions.append(GateRunRow.kind == kind)
        if ref is not None:
            conditions.append(GateRunRow.ref == _normal_ref(ref, "ref"))
        if env is not None:
            check_env(env)
            conditions.append(GateRunRow.env == env)
        count = select(func.count()).select_from(GateRunRow).where(*conditions)
        stmt = (
            select(GateRunRow)
            .where(*conditions)
            .order_by(GateRunRow.id.desc())
            .limit(limit)
            .offset(offset)
            .options(defer(GateRunRow.report))
        )
        with self._read() as session:
            total = int(session.scalar(count) or 0)
            return [_to_gate_run(row, with_report=False) for row in session.scalars(stmt)], total

    def latest_gate_runs(self, ref: str) -> dict[str, GateRun]:
        """The newest gate run of each kind for the release ``ref`` (``{kind: run}``)."""
        normal = _normal_ref(ref, "ref")
        with self._read() as session:
            return q.latest_gate_runs(session, normal)

    # -- output cache ----------------------------------------------------------

    def cache_get(self, key: str) -> dict[str, Any] | None:
        """The cached value under ``key``, or None."""
        return self.cache_get_many([key]).get(key)

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The cached values of those ``keys`` that are cached (``{key: value}``)."""
        wanted = sorted(set(keys))
        for key in wanted:
            _check_key(key)
        found: dict[str, dict[str, Any]] = {}
        if not wanted:
            return found
        with self._read() as session:
            for start in range(0, len(wanted), CACHE_READ_BATCH):
                batch = wanted[start : start + CACHE_READ_BATCH]
                stmt = select(OutputCacheRow.key, OutputCacheRow.value).where(
                    OutputCacheRow.key.in_(batch)
                )
                for key, value in session.execute(stmt):
                    found[key] = json.loads(value)
        return found

    def cache_put(self, key: str, ref: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key`` (replacing what was there), made by release ``ref``."""
        self.cache_put_many([(key, ref, value)])

    def cache_put_many(self, items: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Store many ``(key, ref, value)`` at once (an upsert; the last of a key wins)."""
        rows: dict[str, tuple[str, str]] = {}
        for key, ref, value in items:
            _check_key(key)
            if not ref or len(ref) > REF_LENGTH:
                raise SpecError(f"cache ref {ref!r} must be 1-{REF_LENGTH} characters")
            rows[key] = (ref, _dumps(value, "value"))
        if not rows:
            return
        with self._write() as session:
            _upsert_cache(session, rows, now=self._now())

    def cache_clear(self, ref: str | None = None) -> int:
        """Forget the cached outputs (of ``ref`` only, when given); how many were removed."""
        stmt = delete(OutputCacheRow)
        if ref is not None:
            stmt = stmt.where(OutputCacheRow.ref == ref)
        with self._write() as session:
            removed = session.execute(stmt).rowcount  # type: ignore[attr-defined]
        return int(removed or 0)


# -- helpers -------------------------------------------------------------------------


def _upsert_cache(session: Session, rows: dict[str, tuple[str, str]], *, now: Any) -> None:
    items = sorted(rows.items())  # a fixed order: concurrent writers lock rows alike
    for start in range(0, len(items), CACHE_WRITE_BATCH):
        values = [
            {"key": key, "ref": ref, "value": value, "created_at": now}
            for key, (ref, value) in items[start : start + CACHE_WRITE_BATCH]
        ]
        stmt = q.insert(session, OutputCacheRow).values(values)
        excluded = stmt.excluded
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "ref": excluded.ref,
                    "value": excluded.value,
                    "created_at": excluded.created_at,
                },
            )
        )


def _check_kind(kind: str) -> None:
    if not GATE_KIND_PATTERN.match(kind):
        raise SpecError(
            f"{kind!r} is not a gate kind: use a lower-case word such as eval or loadtest",
            param="kind",
        )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > KEY_LENGTH:
        raise SpecError(
            f"cache key {key!r} must be 1-{KEY_LENGTH} characters (a sha256 hex digest)",
            param="key",
        )


def _split(ref: str) -> tuple[str, str]:
    parsed = parse_ref(ref)
    assert parsed is not None
    return parsed


def _normal_ref(ref: str, param: str) -> str:
    """``NAME@VERSION`` as the registry writes it; an alias or a bad ref is refused."""
    parsed = parse_ref(ref)
    if parsed is None or len(ref) > REF_LENGTH:
        raise SpecError(
            f"{param}: {ref!r} is not NAME@VERSION (resolve an alias first), e.g. chat@1.1.0",
            param=param,
        )
    return f"{parsed[0]}@{parsed[1]}"


def _dumps(data: dict[str, Any], what: str) -> str:
    if not isinstance(data, dict):
        raise SpecError(f"the gate run's {what} must be a JSON object", param=what)
    try:
        return json.dumps(
            _finite(data), sort_keys=True, ensure_ascii=False, allow_nan=False, default=str
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(f"the gate run's {what} is not JSON: {exc}", param=what) from exc


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_to_gate_run = q.to_gate_run
