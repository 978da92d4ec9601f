"""The admin API's bearer token: 401 without one, 403 with a wrong one (constant-time)."""

from __future__ import annotations

import hmac

from llmship.errors import AuthenticationError, NotConfiguredError, PermissionDeniedError

DEFAULT_ACTOR = "admin-api"


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Raise unless ``authorization`` is ``Bearer <token>``.

    No token configured: 503 (the admin API is off). No bearer token: 401. A
    different token: 403. The comparison takes the same time wherever the
    tokens differ (``hmac.compare_digest``).
    """
    if not token:
        raise NotConfiguredError(
            "the admin API is off: set LLMSHIP_ADMIN_TOKEN (the admin_token setting) "
            "for the gateway and send it as `Authorization: Bearer <token>`"
        )
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise AuthenticationError(
            "the admin API needs `Authorization: Bearer <token>` with the gateway's "
            "LLMSHIP_ADMIN_TOKEN"
        )
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise PermissionDeniedError("the bearer token is not the gateway's admin token")


def actor_of(header: str | None) -> str:
    """Who an admin change is recorded as: the ``X-Llmship-Actor`` header, else ``admin-api``."""
    actor = (header or "").strip()
    return actor[:255] if actor else DEFAULT_ACTOR
