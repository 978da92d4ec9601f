"""Who calls the admin API: a bearer token names a person or robot and their role
(:mod:`llmship.gateway.tokens`). 401 without a token, 403 with one no one has or whose
role does not allow the call, 503 when no token is configured at all."""

from __future__ import annotations

from llmship.errors import AuthenticationError, NotConfiguredError, PermissionDeniedError
from llmship.gateway.tokens import ADMIN_TOKEN_NAME, Identity, Role, TokenBook

DEFAULT_ACTOR = ADMIN_TOKEN_NAME
"""Who a change is recorded as when nothing else names anyone."""

_DOING = {
    Role.READ: "read the admin API",
    Role.OPERATOR: "change traffic, flags or rollouts",
    Role.ADMIN: "force past the gates",
}


def authenticate(authorization: str | None, book: TokenBook, *, needs: Role) -> Identity:
    """The identity ``authorization`` (``Bearer <token>``) proves, if its role allows
    ``needs``; raise otherwise.

    No token configured: 503 (the admin API is off). No bearer token: 401. A token no
    one has, or a role below ``needs``: 403. Tokens are compared in constant time.
    """
    if not book.configured:
        raise NotConfiguredError(
            "the admin API is off: set LLMSHIP_ADMIN_TOKEN (the admin_token setting) for "
            "the gateway, or add named tokens with `llmship tokens add NAME --role ROLE`, "
            "and send one as `Authorization: Bearer <token>`"
        )
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise AuthenticationError(
            "the admin API needs `Authorization: Bearer <token>`: the gateway's "
            "LLMSHIP_ADMIN_TOKEN or a token from `llmship tokens add`"
        )
    identity = book.identify(given)
    if identity is None:
        raise PermissionDeniedError("the bearer token is not one of the gateway's tokens")
    if identity.role < needs:
        raise PermissionDeniedError(
            f"token {identity.name!r} has the role {identity.role.label}, which may not "
            f"{_DOING[needs]}: that needs {needs.label} (`llmship tokens add NAME --role "
            f"{needs.label}`)"
        )
    return identity


def actor_of(identity: Identity | None, header: str | None) -> str:
    """Who a change is recorded as: the token's name; ``X-Llmship-Actor`` only adds a
    display name (``alice (Alice Smith)``), it never replaces the token's identity."""
    name = identity.name if identity is not None else DEFAULT_ACTOR
    display = " ".join((header or "").split())[:100]
    return f"{name} ({display})" if display and display != name else name
