"""Feedback on an answer, attributed to the release that gave it."""

from __future__ import annotations

import asyncio

from llmship.errors import InvalidRequestError, NotFoundError, UnprocessableError
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.protocol import FeedbackRequest
from llmship.gateway.recorder import QueryRecorder
from llmship.gateway.store import GatewayStore
from llmship.registry.records import FeedbackRecord

NOT_FOUND_RETRY = 0.5
"""Seconds to wait before looking a query id up once more: another gateway may still
hold it in its batch of query records."""


async def add_feedback(
    store: GatewayStore,
    recorder: QueryRecorder,
    body: FeedbackRequest,
    *,
    actor: str | None,
    retry_after: float = NOT_FOUND_RETRY,
    metrics: GatewayMetrics | None = None,
) -> list[FeedbackRecord]:
    """Store ``body``; 404 for an unknown query id, 422 for an invalid value.

    A query this gateway answered moments ago may not be written yet: its batch
    is written first. An id unknown to the registry is looked up once more after
    ``retry_after`` seconds, for a query another gateway answered.

    Each rating and thumbs stored is counted in ``metrics`` (when given) by the
    release and the variant that answered the query.
    """
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
            f"no query with id {body.query_id!r}: use the X-Request-ID of an answer from this "
            "gateway",
            param="query_id",
        ) from None
    except UnprocessableError:
        raise
    except InvalidRequestError as exc:
        raise UnprocessableError(exc.message, param=exc.param) from None
