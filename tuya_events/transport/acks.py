"""Acknowledge each partition's finished prefix with one cumulative ack.

A Failover consumer receives each partition in order, so a cumulative acknowledgement of message
X means "everything up to X on this partition is done". That is true exactly when every message
received on the partition up to X has finished, which is what this keeps track of: per partition,
the received messages in arrival order, and the longest finished prefix. Messages finish out of
order (devices run concurrently); a finished one behind an unfinished one waits, and is covered by
the cumulative ack once the slow one finishes. Nothing is ever acknowledged past an unfinished
message, and no finished message is held back for long:

One ack per partition per event-loop turn instead of one per message: less work on the event
loop, in the client's I/O threads and in the broker (it moves the cursor instead of recording
each message). Three bounds keep the waiting small:

- when the same unfinished message has held a partition back for ``max_wait`` seconds (a handler
  retrying through an outage), or more than ``max_waiting`` messages wait behind it, the
  finished ones are acknowledged individually and dropped, so a crash then redelivers little
  more than what was unfinished (the owner calls :meth:`release_held_back` periodically, for
  partitions where nothing else finishes);
- on close, every finished message is acknowledged, so a stop leaves only unfinished messages for
  redelivery.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tuya_events.delivery import Delivery

Acknowledge = Callable[[Any], None]


class PrefixAcks:
    """Per partition, the received messages in arrival order, acknowledged as they finish."""

    __slots__ = (
        "_blocked",
        "_clock",
        "_cumulative",
        "_dirty",
        "_individual",
        "_received",
        "max_wait",
        "max_waiting",
    )

    def __init__(
        self,
        cumulative: Acknowledge,
        individual: Acknowledge,
        max_waiting: int = 1000,
        max_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cumulative = cumulative
        self._individual = individual
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._clock = clock
        self._received: dict[int, deque[Delivery]] = {}
        self._dirty: set[int] = set()
        # Per partition: the unfinished message at the head, and since when it holds others back.
        self._blocked: dict[int, tuple[Delivery, float]] = {}

    def received(self, delivery: Delivery) -> None:
        queue = self._received.get(delivery.partition)
        if queue is None:
            queue = self._received[delivery.partition] = deque()
        queue.append(delivery)

    def finished(self, delivery: Delivery) -> bool:
        """Mark one message finished; True when a :meth:`flush` is due (first of a turn)."""
        delivery.finished = True
        due = not self._dirty
        self._dirty.add(delivery.partition)
        return due

    def flush(self) -> None:
        """Acknowledge the finished prefix of every partition that changed since the last one."""
        for partition in self._dirty:
            queue = self._received[partition]
            last = None
            while queue and queue[0].finished:
                last = queue.popleft()
            if last is not None:
                self._cumulative(last.handle)
            if queue:
                self._held_back(partition, queue)
            else:
                self._blocked.pop(partition, None)
        self._dirty.clear()

    def _held_back(self, partition: int, queue: deque[Delivery]) -> None:
        """An unfinished head with finished messages behind it: acknowledge those if it lasts."""
        head = queue[0]
        blocked = self._blocked.get(partition)
        if blocked is None or blocked[0] is not head:
            self._blocked[partition] = (head, self._clock())
        elif len(queue) > self.max_waiting or self._clock() - blocked[1] >= self.max_wait:
            self._acknowledge_waiting(queue)

    def release_held_back(self) -> None:
        """Called periodically: a partition where nothing else finishes gets checked too."""
        if self._blocked:
            self._dirty.update(self._blocked)
            self.flush()

    def flush_all(self) -> None:
        """On close: the prefixes, then every finished message behind an unfinished one."""
        self.flush()
        for queue in self._received.values():
            self._acknowledge_waiting(queue)

    def waiting(self) -> int:
        """Messages received and not yet acknowledged (finished or not)."""
        return sum(len(queue) for queue in self._received.values())

    def _acknowledge_waiting(self, queue: deque[Delivery]) -> None:
        unfinished: deque[Delivery] = deque()
        for delivery in queue:
            if delivery.finished:
                self._individual(delivery.handle)
            else:
                unfinished.append(delivery)
        queue.clear()
        queue.extend(unfinished)
