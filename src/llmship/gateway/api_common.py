"""What the dashboard's API routers share: who may read, who may act, pages of results.

Reads (``GET``) are open to the clients the ``read_access`` setting names (loopback
clients by default) and to anyone with a token of the gateway (:mod:`.tokens`); a token
that is sent is always checked, so a wrong one is a 403 even where reads are open.
Changes need a token of role operator or admin, checked before anything else (an
unknown id is a 401 without it, not a 404).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel, Field

from llmship.errors import NotConfiguredError
from llmship.gateway.auth import actor_of, authenticate
from llmship.gateway.tokens import Identity, Role
from llmship.registry import Registry
from llmship.wire import ErrorResponse

if TYPE_CHECKING:
    from llmship.gateway.app import Gateway

T = TypeVar("T")
V = TypeVar("V", bound="RecordView")

MAX_PAGE = 500
MAX_ID = 2**53
"""The largest id or offset a path or query may name: beyond it, no row exists, and a
64-bit database column cannot even hold the number (JSON parsers hold it exactly)."""
"""The most items one page holds."""

READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid query: the message says what to fix."},
    401: {"model": ErrorResponse, "description": "Reads need `Authorization: Bearer <token>`."},
    403: {"model": ErrorResponse, "description": "A wrong token."},
    404: {"model": ErrorResponse, "description": "Unknown id."},
    503: {"model": ErrorResponse, "description": "No registry, or no admin token configured."},
}


def gateway_of(request: Request) -> Gateway:
    """The :class:`Gateway` the request reached."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def registry_of(request: Request) -> Registry:
    """The registry behind the gateway (503 when the gateway runs on something else)."""
    store = gateway_of(request).store
    if not isinstance(store, Registry):
        raise NotConfiguredError(
            "the dashboard's API reads the release registry, and this "
            "gateway has none: start it with `llmship gateway`"
        )
    return store


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _identify(request: Request, needs: Role) -> Identity:
    known = identity(request)  # a router's check and a route's may both ask: check once
    if known is not None and known.role >= needs:
        return known
    found = authenticate(
        request.headers.get("authorization"), gateway_of(request).tokens, needs=needs
    )
    request.state.identity = found
    return found


def require_reader(request: Request) -> None:
    """Let a read through: a sent token must be one of the gateway's (403 otherwise);
    without one, the ``read_access`` setting decides (401 where it does not allow it)."""
    gateway = gateway_of(request)
    authorization = request.headers.get("authorization")
    access = gateway.settings.read_access
    if authorization or access == "token" or (access == "local" and not _loopback(request)):
        _identify(request, Role.READ)


def require_token(request: Request) -> None:
    """Let a call through with any of the gateway's tokens (role read or above)."""
    _identify(request, Role.READ)


def require_operator(request: Request) -> None:
    """Let a change through: only with a token of role operator or admin (401 without a
    token, 403 with a wrong one or a read-only one, 503 when none is configured)."""
    _identify(request, Role.OPERATOR)


def require_force(request: Request) -> None:
    """Raise unless the caller's token may force past the gates (role admin)."""
    _identify(request, Role.ADMIN)


def identity(request: Request) -> Identity | None:
    """Who the request's token names (None: no token was checked)."""
    found: Identity | None = getattr(request.state, "identity", None)
    return found


def actor(request: Request) -> str:
    """Who a change is recorded as: the token's name, with ``X-Llmship-Actor`` as a
    display name after it."""
    return actor_of(identity(request), request.headers.get("x-llmship-actor"))


def iso(at: datetime) -> str:
    """``at`` as an ISO-8601 UTC string (the registry's datetimes are UTC; a naive one
    is read as UTC)."""
    utc = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return utc.isoformat()


class RecordView(BaseModel):
    """A response model read off one of the registry's records: each field from the
    record's attribute of the same name, datetimes as ISO-8601 UTC."""

    @classmethod
    def of(cls: type[V], record: Any, **given: Any) -> V:
        """The view of ``record``; ``given`` fields are taken as they are."""
        values = dict(given)
        for name in cls.model_fields:
            if name not in values:
                value = getattr(record, name)
                values[name] = iso(value) if isinstance(value, datetime) else value
        return cls(**values)


class PageParams:
    """``?limit=&offset=`` of a paginated read (a FastAPI dependency)."""

    def __init__(
        self,
        limit: int = Query(50, ge=1, le=MAX_PAGE, description="Items per page (at most 500)."),
        offset: int = Query(0, ge=0, le=MAX_ID, description="Items to skip."),
    ) -> None:
        self.limit = limit
        self.offset = offset

    def page(self, items: Sequence[T]) -> Page[T]:
        """This page of ``items`` (all of them, in order), with the total."""
        return Page[T](
            items=list(items[self.offset : self.offset + self.limit]),
            total=len(items),
            limit=self.limit,
            offset=self.offset,
        )


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, and ``total`` items in all; the next page is at
    ``offset + limit`` while that is below ``total``."""

    items: list[T] = Field(description="This page's items.")
    total: int = Field(description="How many items there are in all.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many items were skipped.")
