"""The handler contract: one narrow protocol, and the errors that steer retries.

A handler raises :class:`HandlerError` to say how it failed; any other exception is taken as a
retryable bug-or-glitch. It never acknowledges anything itself: the pipeline does, in one place.

``handle`` is usually ``async def``. A handler whose work never waits (logging, counting) may be
a plain ``def`` returning None: the pipeline then finishes the message without creating a task
or a coroutine for it, which is most of its per-message cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from tuya_events.config.errors import key_path
from tuya_events.delivery import Delivery
from tuya_events.tuya.events import Event

if TYPE_CHECKING:
    from tuya_events.config.settings import Settings
    from tuya_events.observability.metrics import Metrics

T = TypeVar("T")


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


class SharedResources:
    """What handlers of one daemon share, such as one OpenAPI client (one token, one rate
    limit) per cloud project: made by the first handler that asks, and kept for as long as the
    handlers built with the same context."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}

    def get_or_create(self, key: Hashable, create: Callable[[], T]) -> T:
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = create()
        return item  # each key is made by one create, so its item is a T


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler gets from whoever builds it, besides its own options: filled once, when
    handlers are built (as arq hands its jobs a ``ctx``).

    ``where`` is the key path of the handler's configuration (``("handlers", 2)``), for the
    configuration errors it finds itself, at start for instance.
    """

    settings: Settings
    metrics: Metrics
    where: tuple[str | int, ...] = ("handlers",)
    shared: SharedResources = field(default_factory=SharedResources)

    def for_handler(self, index: int) -> HandlerContext:
        """The same daemon's context for ``handlers[index]``."""
        return replace(self, where=("handlers", index))

    def key(self, *below: str | int) -> str:
        """A key path within the handler's configuration: ``handlers[2].dsn``."""
        return key_path((*self.where, *below))


@runtime_checkable
class Handler(Protocol):
    """What the pipeline calls.

    ``handle`` returns an awaitable (an ``async def``) or None (a plain ``def`` that is done when
    it returns). ``timeout`` (seconds or None) bounds the awaiting of one attempt; a plain ``def``
    runs on the event loop and must be quick.
    """

    name: str
    timeout: float | None

    async def start(self) -> None: ...

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None] | None: ...

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

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None] | None:
        raise NotImplementedError
