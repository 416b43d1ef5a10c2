"""An in-process source: the demo's simulated Tuya service, and the fast tests' broker.

It behaves like a broker where it matters: what is not acknowledged is delivered again on
:meth:`redeliver_unacknowledged`, with its redelivery count raised.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from tuya_events.delivery import Delivery

RECENT_ACKS = 10_000


class MemorySource:
    def __init__(self, poll_interval: float = 0.1, batch_size: int = 500) -> None:
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._ids = itertools.count(1)
        self.unacknowledged: dict[str, Delivery] = {}
        self.acknowledged: list[str] = []
        # What a broker restart could still hand out again (its last acks not yet persisted).
        self._recently_acknowledged: deque[Delivery] = deque(maxlen=RECENT_ACKS)
        self.closed = False
        self.online = True  # a test sets it False for a broker it cannot reach

    def publish(
        self,
        body: bytes,
        properties: dict[str, str],
        partition: int = 0,
        key: str | None = None,
        publish_time_ms: int | None = None,
    ) -> Delivery:
        import time

        message_id = f"mem:{next(self._ids)}:{partition}"
        delivery = Delivery(
            body=body,
            properties=properties,
            message_id=message_id,
            topic="memory",
            partition=partition,
            publish_time_ms=publish_time_ms or int(time.time() * 1000),
            key=key,
        )
        self.unacknowledged[message_id] = delivery
        self._queue.put_nowait(delivery)
        return delivery

    def redeliver_unacknowledged(self) -> int:
        """Like a consumer reconnect: every unacknowledged message comes again."""
        pending = list(self.unacknowledged.values())
        for delivery in pending:
            delivery.redelivery_count += 1
            self._queue.put_nowait(delivery)
        return len(pending)

    def lose_acknowledgements(self) -> int:
        """Like a broker restart that lost its last acknowledgements: the messages acknowledged
        recently come again, as the same messages (same ids), with their redelivery count
        raised."""
        lost = list(self._recently_acknowledged)
        self._recently_acknowledged.clear()
        for delivery in lost:
            delivery.redelivery_count += 1
            delivery.dead_letter_id = None
            self.unacknowledged[delivery.message_id] = delivery
            self._queue.put_nowait(delivery)
        return len(lost)

    async def start(self) -> None:
        return None

    async def receive_batch(self) -> list[Delivery]:
        try:
            first = await asyncio.wait_for(self._queue.get(), self.poll_interval)
        except asyncio.TimeoutError:
            return []
        batch = [first]
        while len(batch) < self.batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    @property
    def queued(self) -> int:
        """Published, not yet received (a broker would keep these for the next consumer)."""
        return self._queue.qsize()

    def acknowledge(self, delivery: Delivery) -> None:
        if self.unacknowledged.pop(delivery.message_id, None) is not None:
            self.acknowledged.append(delivery.message_id)
            self._recently_acknowledged.append(delivery)

    def connected(self) -> bool:
        return self.online and not self.closed

    async def close(self) -> None:
        self.closed = True
