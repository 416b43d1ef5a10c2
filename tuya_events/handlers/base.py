"""The handler contract: one narrow async protocol, and the errors that steer retries.

A handler raises :class:`HandlerError` to say how it failed; any other exception is taken as a
retryable bug-or-glitch. It never acknowledges anything itself: the pipeline does, in one place.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tuya_events.pipeline.delivery import Delivery
from tuya_events.tuya.events import Event


class HandlerError(Exception):
    """A failure, classified for the pipeline.

    ``retryable=False``: the input will never work (e.g. HTTP 400) -> dead-letter now.
    ``infrastructure=True``: something we depend on is down (database, HTTP 5xx) -> retry for as
    long as ``retry.infrastructure_max_time`` allows; such a failure never counts as the event's
    fault. ``retry_after`` asks for a minimum wait (HTTP ``Retry-After``).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool = True,
        infrastructure: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable or infrastructure
        self.infrastructure = infrastructure
        self.retry_after = retry_after


@runtime_checkable
class Handler(Protocol):
    """What the pipeline calls. ``timeout`` (seconds or None) bounds one ``handle`` call."""

    name: str
    timeout: float | None

    async def start(self) -> None: ...

    async def handle(self, event: Event, delivery: Delivery) -> None: ...

    async def stop(self) -> None: ...


class BaseHandler:
    """Convenience base: a name, no timeout, nothing to start or stop."""

    timeout: float | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def handle(self, event: Event, delivery: Delivery) -> None:
        raise NotImplementedError
