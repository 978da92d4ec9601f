"""Releases and aliases for the dashboard: the releases with their specs, a diff between
two, aliases and their history.

A release's spec is shown as the YAML ``llmship models register`` accepts back
(:meth:`ReleaseSpec.to_yaml`); a diff lists the changed fields as dotted paths and
gives the unified diff of the two YAML texts.
"""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from llmship.errors import SpecError
from llmship.gateway.api_common import (
    MAX_PAGE,
    READ_ERRORS,
    Page,
    PageParams,
    RecordView,
    iso,
    registry_of,
    require_reader,
)
from llmship.gateway.api_runs import GateRunSummary
from llmship.names import REF_PATTERN
from llmship.registry import Registry
from llmship.registry.records import ReleaseRecord
from llmship.release.semver import Version
from llmship.release.spec import parse_ref

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)


class ReleaseView(BaseModel):
    """A registered release: its spec and who registered it when."""

    ref: str = Field(description="`NAME@VERSION`.")
    name: str = Field(description="The release name.")
    version: str = Field(description="The semantic version.")
    digest: str = Field(description="sha256 of the spec's canonical JSON.")
    backend: str = Field(description="`llamacpp` or `openai`.")
    model: str | None = Field(
        description="The model: an upstream's model id, the GGUF file, its path or package."
    )
    created_at: str = Field(description="When it was registered (ISO-8601, UTC).")
    created_by: str = Field(description="Who registered it.")
    spec: dict[str, Any] = Field(description="The release spec (defaults included).")

    @classmethod
    def of(cls, record: ReleaseRecord) -> ReleaseView:
        """The view of ``record``."""
        model = record.spec.model
        return cls(
            ref=record.ref,
            name=record.name,
            version=record.version,
            digest=record.digest,
            backend=record.backend,
            model=model.id or model.file or model.path or model.package,
            created_at=iso(record.created_at),
            created_by=record.created_by,
            spec=record.spec.to_dict(),
        )


class AliasOfRelease(BaseModel):
    """An alias that points at a release."""

    env: str = Field(description="The environment.")
    alias: str = Field(description="The alias, e.g. `production`.")


class ReleaseDetail(ReleaseView):
    """A release, the aliases pointing at it, its gate runs and its spec as YAML."""

    aliases: list[AliasOfRelease] = Field(description="The aliases that point at it now.")
    gate_runs: list[GateRunSummary] = Field(
        description=f"Its gate runs (eval, load test), newest first (at most {MAX_PAGE})."
    )
    spec_yaml: str = Field(description="The spec as YAML that `llmship models register` takes.")


class SpecChange(BaseModel):
    """A field that differs between two specs."""

    path: str = Field(description="The field as a dotted path, e.g. `params.temperature`.")
    a: Any = Field(description="Its value in `a` (null: not set there).")
    b: Any = Field(description="Its value in `b` (null: not set there).")


class ReleaseDiff(BaseModel):
    """How release ``b``'s spec differs from release ``a``'s."""

    a: str = Field(description="The release compared from.")
    b: str = Field(description="The release compared to.")
    changes: list[SpecChange] = Field(description="Every field that differs, in spec order.")
    unified: str = Field(description="The unified diff of the two specs' YAML (empty: equal).")


class AliasView(RecordView):
    """Where an alias points."""

    env: str = Field(description="The environment.")
    alias: str = Field(description="The alias.")
    ref: str = Field(description="The release it points at.")
    updated_at: str = Field(description="When it last moved (ISO-8601, UTC).")


class AliasMoveView(RecordView):
    """One move of an alias."""

    id: int = Field(description="The move's id.")
    env: str = Field(description="The environment.")
    alias: str = Field(description="The alias.")
    from_ref: str | None = Field(description="Where it pointed before (null: it was created).")
    to_ref: str = Field(description="Where it pointed after.")
    actor: str = Field(description="Who moved it.")
    reason: str = Field(description="Why.")
    at: str = Field(description="When (ISO-8601, UTC).")


# -- the diff ------------------------------------------------------------------------


def spec_changes(a: Any, b: Any, path: str = "") -> list[SpecChange]:
    """The fields that differ between the specs ``a`` and ``b``, as dotted paths in spec
    order (``a``'s keys, then those only ``b`` has). Mappings are walked (a missing one
    counts as empty); anything else, a list included, is compared whole."""
    if _mapping(a) and _mapping(b) and (a is not None or b is not None):
        left, right = a or {}, b or {}
        keys = list(left) + [key for key in right if key not in left]
        found: list[SpecChange] = []
        for key in keys:
            inner = f"{path}.{key}" if path else str(key)
            found += spec_changes(left.get(key), right.get(key), inner)
        return found
    return [] if a == b else [SpecChange(path=path, a=a, b=b)]


def _mapping(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _split_ref(ref: str, param: str) -> tuple[str, str]:
    """``(name, version)`` of ``ref``; 400 when it is not ``NAME@VERSION``."""
    example = "e.g. chat@1.1.0; an alias is not compared, the release it points at is"
    try:
        parsed = parse_ref(ref) if ref else None
        if parsed is not None:
            Version.parse(parsed[1])
    except (SpecError, ValueError):
        parsed = None
    if parsed is None:
        raise SpecError(f"{param}: {ref!r} is not NAME@VERSION ({example})", param=param)
    return parsed


def release_diff(registry: Registry, a: str, b: str) -> ReleaseDiff:
    """How release ``b``'s spec differs from ``a``'s (400 for a malformed ref, 404 unknown)."""
    first, second = _split_ref(a, "a"), _split_ref(b, "b")
    before, after = registry.get(*first), registry.get(*second)
    unified = difflib.unified_diff(
        before.spec.to_yaml().splitlines(keepends=True),
        after.spec.to_yaml().splitlines(keepends=True),
        fromfile=before.ref,
        tofile=after.ref,
    )
    return ReleaseDiff(
        a=before.ref,
        b=after.ref,
        changes=spec_changes(before.spec.to_dict(), after.spec.to_dict()),
        unified="".join(unified),
    )


# -- reads ---------------------------------------------------------------------------


def _releases(registry: Registry, name: str | None, page: PageParams) -> Page[ReleaseView]:
    records = sorted(registry.list_releases(name), key=lambda r: (r.created_at, r.id), reverse=True)
    return Page[ReleaseView](
        items=[ReleaseView.of(r) for r in records[page.offset : page.offset + page.limit]],
        total=len(records),
        limit=page.limit,
        offset=page.offset,
    )


def _release(registry: Registry, name: str, version: str) -> ReleaseDetail:
    record = registry.get(name, version)
    aliases = [a for a in registry.list_aliases() if a.release_id == record.id]
    runs, _ = registry.page_gate_runs(ref=record.ref, limit=MAX_PAGE)
    return ReleaseDetail(
        **ReleaseView.of(record).model_dump(),
        aliases=[AliasOfRelease(env=a.env, alias=a.alias) for a in aliases],
        gate_runs=[GateRunSummary.of(run) for run in runs],
        spec_yaml=record.spec.to_yaml(),
    )


def _aliases(registry: Registry, env: str | None, page: PageParams) -> Page[AliasView]:
    return page.page([AliasView.of(a) for a in registry.list_aliases(env)])


def _history(registry: Registry, env: str, alias: str, page: PageParams) -> Page[AliasMoveView]:
    moves = registry.alias_history(env, alias)
    return page.page([AliasMoveView.of(m) for m in reversed(moves)])


# -- routes ----------------------------------------------------------------------------


@router.get(
    "/releases",
    response_model=Page[ReleaseView],
    summary="List releases",
    dependencies=[Depends(require_reader)],
)
async def list_releases(
    request: Request,
    name: str | None = Query(None, description="Only the versions of this release name."),
    page: PageParams = Depends(),
) -> Page[ReleaseView]:
    """The registered releases, newest first."""
    return await asyncio.to_thread(_releases, registry_of(request), name, page)


@router.get(
    "/releases/diff",
    response_model=ReleaseDiff,
    summary="Compare two releases",
    dependencies=[Depends(require_reader)],
)
async def diff_releases(
    request: Request,
    a: str = Query(
        description="The release to compare from (`NAME@VERSION`).",
        json_schema_extra={"pattern": REF_PATTERN},
    ),
    b: str = Query(
        description="The release to compare to (`NAME@VERSION`).",
        json_schema_extra={"pattern": REF_PATTERN},
    ),
) -> ReleaseDiff:
    """The fields of ``b``'s spec that differ from ``a``'s, and the unified diff of their
    YAML. 400 for a ref that is not `NAME@VERSION`, 404 for an unknown release."""
    return await asyncio.to_thread(release_diff, registry_of(request), a, b)


@router.get(
    "/releases/{name}/{version}",
    response_model=ReleaseDetail,
    summary="Show a release",
    dependencies=[Depends(require_reader)],
)
async def show_release(request: Request, name: str, version: str) -> ReleaseDetail:
    """The release with the aliases that point at it, its gate runs and its spec as
    YAML. 404 for an unknown release (the message lists the known versions)."""
    return await asyncio.to_thread(_release, registry_of(request), name, version)


@router.get(
    "/aliases",
    response_model=Page[AliasView],
    summary="List aliases",
    dependencies=[Depends(require_reader)],
)
async def list_aliases(
    request: Request,
    env: str | None = Query(None, description="Only the aliases of this environment."),
    page: PageParams = Depends(),
) -> Page[AliasView]:
    """The aliases and where they point, by environment and name."""
    return await asyncio.to_thread(_aliases, registry_of(request), env, page)


@router.get(
    "/aliases/{env}/{alias}/history",
    response_model=Page[AliasMoveView],
    summary="An alias's history",
    dependencies=[Depends(require_reader)],
)
async def alias_history(
    request: Request, env: str, alias: str, page: PageParams = Depends()
) -> Page[AliasMoveView]:
    """Every move of the alias, newest first (none for an alias never set)."""
    return await asyncio.to_thread(_history, registry_of(request), env, alias, page)
