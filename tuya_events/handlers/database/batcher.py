"""Group commit: many concurrent ``handle()`` calls share one transaction.

Each caller gets a future that resolves only once the batch carrying its item has been written
(committed) or failed, with that item's own outcome. A batch is cut when it holds ``max_size``
items or its oldest item has waited ``max_wait``; at most ``concurrency`` batches are written at
once, and while all writers are busy the next batch keeps filling, so batches grow under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tuya_events.observability.logging import get_logger

T = TypeVar("T")
# Per item: None (written) or the exception to raise in its caller.
Outcomes = Sequence[BaseException | None]
Writer = Callable[[list[T]], Awaitable[Outcomes]]

log = get_logger("tuya_events.handlers.database")


class BatcherClosed(RuntimeError):
    """``submit`` after ``close``: the handler is stopping."""


class Batcher(Generic[T]):
    def __init__(
        self, write: Writer[T], max_size: int, max_wait: float, concurrency: int = 1
    ) -> None:
        self._write = write
        self.max_size = max_size
        self.max_wait = max_wait
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: deque[tuple[T, asyncio.Future[None], float]] = deque()
        self._wakeup = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # written (or failed) so far: for tests and benchmarks
        self.items = 0

    @property
    def writing(self) -> int:
        """Batches being written right now."""
        return len(self._writes)

    @property
    def waiting(self) -> int:
        """Items not yet in a batch being written."""
        return len(self._pending)

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queue one item; the future resolves when its batch is committed (or fails)."""
        if self._closing:
            raise BatcherClosed("the database handler is stopping")
        loop = asyncio.get_running_loop()
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, future, loop.time()))
        if len(self._pending) == 1 or len(self._pending) >= self.max_size:
            self._wakeup.set()
        return future

    async def close(self) -> None:
        """Write what is pending, wait for every write in progress, stop."""
        self._closing = True
        self._wakeup.set()
        if self._runner is not None:
            await self._runner
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._pending[0][2] + self.max_wait
            while len(self._pending) < self.max_size and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
            await self._slots.acquire()
            count = min(self.max_size, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            task = loop.create_task(self._write_batch(batch))
            self._writes.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._slots.release()

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None], float]]) -> None:
        self.batches += 1
        self.items += len(batch)
        outcomes: Outcomes
        try:
            outcomes = await self._write([item for item, _, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except asyncio.CancelledError:
            for _, future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # the writer's own bug: every caller hears of it
            log.error("database batch failed", error=f"{type(exc).__name__}: {exc}")
            outcomes = [exc] * len(batch)
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
