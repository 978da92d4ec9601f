"""The bounded FIFO queue in front of a backend."""

from __future__ import annotations

import asyncio

import pytest

from llmship.errors import QueueFullError
from llmship.server.scheduler import Scheduler

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_slots_then_queue_then_refusal() -> None:
    s = Scheduler(slots=1, queue_size=2)
    assert await s.acquire() == 0.0
    order: list[int] = []

    async def wait(n: int) -> None:
        await s.acquire()
        order.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in (1, 2)]
    await asyncio.sleep(0)
    assert s.waiting == 2
    with pytest.raises(QueueFullError) as full:
        await s.acquire()
    assert full.value.headers()["Retry-After"] == str(full.value.retry_after)
    s.release(held_for=2.0)
    await asyncio.sleep(0)
    assert order == [1]
    s.release()
    await asyncio.gather(*waiters)
    assert order == [1, 2]
    s.release()
    assert s.running == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    s = Scheduler(slots=1, queue_size=1)
    await s.acquire()
    task = asyncio.create_task(s.acquire())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.waiting == 0
    s.release()
    assert s.running == 0
    assert await s.acquire() == 0.0


async def test_retry_after_grows_with_the_queue() -> None:
    s = Scheduler(slots=1, queue_size=0)
    for _ in range(5):
        await s.acquire()
        s.release(held_for=3.0)
    await s.acquire()
    with pytest.raises(QueueFullError) as full:
        await s.acquire()
    assert full.value.retry_after == 3
