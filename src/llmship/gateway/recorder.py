"""Which release answered each query, written to the registry in batches off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from llmship.errors import InvalidRequestError
from llmship.gateway.store import GatewayStore
from llmship.registry.records import QueryRecord

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.2
"""Seconds between writes of the pending queries."""
FLUSH_ROWS = 200
"""A write starts early once this many queries are pending."""
MAX_PENDING = 100_000
"""While the registry is down, at most this many queries wait; the oldest are dropped."""


class QueryRecorder:
    """Collects :class:`QueryRecord` rows and writes them with ``record_queries`` in a
    thread, every :data:`FLUSH_INTERVAL` or :data:`FLUSH_ROWS` rows. Rows stay pending
    (and findable with :meth:`pending`) until written; a failed write is retried."""

    def __init__(
        self,
        store: GatewayStore,
        *,
        interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_ROWS,
        max_pending: int = MAX_PENDING,
    ):
        self.store = store
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: dict[str, QueryRecord] = {}
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._failing = False
        self.dropped = 0

    def add(self, row: QueryRecord) -> None:
        """Queue one row (on the event loop; never blocks)."""
        pending = self._pending
        pending[row.query_id] = row
        if len(pending) >= self.batch and self._wake is not None:
            self._wake.set()
        if len(pending) > self.max_pending:
            del pending[next(iter(pending))]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("dropped %d query records: the registry takes none", self.dropped)

    def pending(self, query_id: str) -> QueryRecord | None:
        """The row of ``query_id`` if it is not written yet."""
        return self._pending.get(query_id)

    async def flush(self) -> None:
        """Write every pending row now; raises what the store raised (rows stay pending)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._pending:
                return
            rows = list(self._pending.values())
            await asyncio.to_thread(self._write, rows)
            for row in rows:
                if self._pending.get(row.query_id) is row:
                    del self._pending[row.query_id]
            if self._failing:
                self._failing = False
                log.info("query records are written again")

    def _write(self, rows: list[QueryRecord]) -> None:
        """Write ``rows``; a batch the registry refuses is written row by row, dropping
        (and logging) the rows it refuses, so one bad row cannot hold up the rest."""
        try:
            self.store.record_queries(rows)
            return
        except InvalidRequestError:
            pass
        for row in rows:
            try:
                self.store.record_queries([row])
            except InvalidRequestError as exc:
                log.warning("dropped the query record %s: %s", row.query_id, exc.message)

    async def flush_quietly(self) -> None:
        """:meth:`flush`, logging a failure once instead of raising it."""
        try:
            await self.flush()
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot write %d query records (%s: %s); retrying",
                    len(self._pending),
                    type(exc).__name__,
                    exc,
                )

    async def run(self) -> None:
        """Write pending rows every interval (sooner when a batch fills) until cancelled."""
        self._wake = wake = asyncio.Event()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.interval)
            wake.clear()
            await self.flush_quietly()
