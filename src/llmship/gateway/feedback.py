"""Feedback on an answer, attributed to the release that gave it.

Only the client that got an answer can rate it: the gateway issues every query id
itself (a client's ``X-Request-ID`` never becomes one) and returns, with each answer,
a feedback token, an HMAC of the query id under a key kept in the registry (so every
gateway of the registry agrees on it). A rating that carries a token is refused with
403 unless the token is right; the ``feedback_token`` setting says whether a rating
must carry one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from typing import Any, Literal

from llmship.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableError,
)
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.protocol import FeedbackRequest
from llmship.gateway.recorder import QueryRecorder
from llmship.gateway.store import GatewayStore
from llmship.registry.records import FeedbackRecord

log = logging.getLogger(__name__)

NOT_FOUND_RETRY = 0.5
"""Seconds to wait before looking a query id up once more: another gateway may still
hold it in its batch of query records."""
TOKEN_HEX = 32
"""Hex digits of a feedback token (128 bits of the HMAC-SHA256)."""
LOAD_RETRY = 5.0
"""Seconds between tries to read the key while the registry cannot be reached."""


class FeedbackTokens:
    """Issues and checks feedback tokens: ``HMAC-SHA256(key, query_id)``, hex, cut to
    :data:`TOKEN_HEX` digits. The key is read once from the registry
    (``feedback_secret``); until then answers carry no token."""

    def __init__(self, store: GatewayStore):
        self.store = store
        self._key: bytes | None = None
        self._warned = False

    def token(self, query_id: str) -> str | None:
        """The token of ``query_id``; None while the key is not read yet."""
        key = self._key
        if key is None:
            return None
        return hmac.new(key, query_id.encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]

    def load(self) -> bytes:
        """Read the key from the registry (blocking; raises what the registry raised)."""
        if self._key is None:
            self._key = self.store.feedback_secret()
        return self._key

    async def load_quietly(self) -> bool:
        """Read the key unless it is read already; False (logged once) when the registry
        cannot give it."""
        if self._key is not None:
            return True
        try:
            await asyncio.to_thread(self.load)
        except Exception as exc:
            if not self._warned:
                log.warning("cannot read the feedback key (%s); answers carry no token", exc)
            self._warned = True
            return False
        return True

    async def run(self, retry: float = LOAD_RETRY) -> None:
        """Read the key, trying every ``retry`` seconds while the registry is down."""
        while not await self.load_quietly():
            await asyncio.sleep(retry)

    async def check(
        self, query_id: str, given: str | None, rule: Literal["optional", "required"]
    ) -> None:
        """PermissionDeniedError (403) for a wrong token, or a missing one that ``rule``
        requires; reads the key first when it is not read yet."""
        if given is None:
            if rule == "required":
                raise PermissionDeniedError(
                    "this gateway takes ratings only with the answer's feedback token: send "
                    "`feedback_token` (the X-Llmship-Feedback-Token header of the answer, or "
                    "feedback_token of /predict)",
                    param="feedback_token",
                    code="feedback_token_required",
                )
            return
        if self._key is None:
            await asyncio.to_thread(self.load)
        expected = self.token(query_id)
        if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise PermissionDeniedError(
                f"the feedback token is not the one issued with the answer {query_id!r}: only "
                "the client that got the answer can rate it",
                param="feedback_token",
                code="invalid_feedback_token",
            )


def with_feedback_token(body: bytes, token: str) -> bytes:
    """A /predict answer with ``feedback_token`` added next to its ``query_id`` (the
    body unchanged when it is not such a JSON object)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict) or "query_id" not in answer:
        return body
    out: dict[str, Any] = {}
    for key, value in answer.items():
        out[key] = value
        if key == "query_id":
            out["feedback_token"] = token
    return json.dumps(out, ensure_ascii=False).encode()


def one_per_user(records: Iterable[FeedbackRecord]) -> list[FeedbackRecord]:
    """The newest rating and the newest thumbs of each user, from ``records`` oldest
    first: what an A/B comparison counts, so that a user who rated many answers counts
    once. Feedback without a user counts once per answer (its query id)."""
    newest: dict[tuple[str, str], FeedbackRecord] = {}
    for record in records:
        who = f"user:{record.user}" if record.user else f"query:{record.query_id}"
        key = (record.kind, who)
        newest.pop(key, None)  # keep the order of the newest ones
        newest[key] = record
    return list(newest.values())


async def add_feedback(
    store: GatewayStore,
    recorder: QueryRecorder,
    body: FeedbackRequest,
    *,
    actor: str | None,
    tokens: FeedbackTokens | None = None,
    token_rule: Literal["optional", "required"] = "optional",
    retry_after: float = NOT_FOUND_RETRY,
    metrics: GatewayMetrics | None = None,
) -> list[FeedbackRecord]:
    """Store ``body``; 403 for a wrong (or a required but missing) feedback token, 404
    for an unknown query id, 422 for an invalid value.

    A query this gateway answered moments ago may not be written yet: its batch
    is written first. An id unknown to the registry is looked up once more after
    ``retry_after`` seconds, for a query another gateway answered.

    Each rating and thumbs stored is counted in ``metrics`` (when given) by the
    release and the variant that answered the query.
    """
    if tokens is not None:
        await tokens.check(body.query_id, body.feedback_token, token_rule)
    local = recorder.pending(body.query_id)
    if local is not None:
        await recorder.flush()

    def add() -> list[FeedbackRecord]:
        records = store.add_feedback(
            body.query_id,
            rating=body.rating,
            thumbs=body.thumbs,
            comment=body.comment,
            actor=actor,
            user=body.user,
        )
        if metrics is not None:
            variant = (local or store.get_query(body.query_id)).variant
            for record in records:
                metrics.count_feedback(record.ref, variant, record.kind, record.value)
        return records

    try:
        try:
            return await asyncio.to_thread(add)
        except NotFoundError:
            if retry_after <= 0:
                raise
        await asyncio.sleep(retry_after)
        return await asyncio.to_thread(add)
    except NotFoundError:
        raise NotFoundError(
            f"no query with id {body.query_id!r}: use the X-Llmship-Query-Id of an answer from "
            "this gateway",
            param="query_id",
        ) from None
    except UnprocessableError:
        raise
    except InvalidRequestError as exc:
        raise UnprocessableError(exc.message, param=exc.param) from None
