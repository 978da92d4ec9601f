"""A bounded, first-come-first-served queue in front of a backend."""

from __future__ import annotations

import asyncio
import collections
import time

from llmship.errors import QueueFullError


class Scheduler:
    """Lets ``slots`` requests generate at once; up to ``queue_size`` more wait in order.

    A request beyond that is refused with ``QueueFullError`` (429), whose
    ``Retry-After`` estimates when a place frees up.
    """

    def __init__(self, slots: int, queue_size: int):
        self.slots = slots
        self.queue_size = queue_size
        self._running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._recent: collections.deque[float] = collections.deque(maxlen=32)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return self._running

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        if self._running < self.slots and not self._waiters:
            self._running += 1
            return 0.0
        if len(self._waiters) >= self.queue_size:
            raise QueueFullError(
                f"the model is busy: {self._running} request(s) running and "
                f"{len(self._waiters)} waiting (queue_size={self.queue_size}); retry later",
                retry_after=self._retry_after(),
            )
        start = time.perf_counter()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # the slot was handed over as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise
        return time.perf_counter() - start

    def release(self, held_for: float | None = None) -> None:
        """Give the slot back; ``held_for`` (seconds) feeds the Retry-After estimate."""
        if held_for is not None:
            self._recent.append(held_for)
        self._release_slot()

    def _release_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self._running -= 1

    def _retry_after(self) -> int:
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        ahead = (len(self._waiters) + self._running) / max(self.slots, 1)
        return max(1, round(typical * ahead))
