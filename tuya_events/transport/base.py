"""The source contract the daemon consumes from."""

from __future__ import annotations

from typing import Protocol

from tuya_events.delivery import Delivery


class Source(Protocol):
    """Yields batches of received messages and acknowledges each one once it is finished
    (at once, or later in arrival order: never a message that has not finished)."""

    async def start(self) -> None: ...

    async def receive_batch(self) -> list[Delivery]:
        """Wait up to a short poll interval; an empty list means nothing arrived."""
        ...

    def acknowledge(self, delivery: Delivery) -> None: ...

    def connected(self) -> bool: ...

    async def close(self) -> None: ...
