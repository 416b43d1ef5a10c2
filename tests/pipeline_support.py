"""Helpers for driving the real daemon in-process on the in-memory source.

This module keeps its path: the benchmarks import it (``make_settings`` and ``wait_until`` among
its names, which live in tests/support/ with the other shared helpers).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tests import vectors as v
from tests.support.metrics import handler_outcomes
from tests.support.settings import make_settings
from tests.support.waiting import wait_until
from tuya_events.cli.run import exit_code
from tuya_events.config.settings import Settings
from tuya_events.daemon import Daemon, Stopped
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerError
from tuya_events.pipeline.routes import Route
from tuya_events.transport.memory import MemorySource
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder
from tuya_events.tuya.events import Event

__all__ = [
    "ENCODER",
    "Harness",
    "RecordingHandler",
    "decoded_status",
    "in_harness",
    "make_settings",
    "random_delay",
    "status_message",
    "wait_until",
]

ENCODER = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
T = TypeVar("T")


def status_message(
    device: str, seq: int, em: str | None = "aes_ecb"
) -> tuple[bytes, dict[str, str]]:
    """An encrypted status report of ``device`` whose data point ``seq`` is ``seq``."""
    document = {
        "dataId": f"{device}-{seq}",
        "devId": device,
        "productKey": "pk",
        "status": [{"code": "seq", "value": seq, "t": 1700000000000 + seq}],
    }
    return ENCODER.encode(document, em=em, protocol=4)


def decoded_status(device: str = "dev00", seq: int = 0) -> tuple[Event, Delivery]:
    """:func:`status_message` decoded, with its delivery: what a handler is handed."""
    body, properties = status_message(device, seq)
    event = TuyaCodec(v.ACCESS_SECRET).decode(body, properties)
    return event, Delivery(body=body, properties=properties, message_id=f"m:{device}:{seq}")


class RecordingHandler(BaseHandler):
    """Records (device, seq) in the order handled; can be told to fail or to be slow.

    ``style`` picks which path of the pipeline it takes: ``async`` (an awaitable, sleeping
    ``delay`` when given), ``sync`` (a plain call that is done when it returns) or ``mixed``
    (every third sequence number of a device waits ``delay``, default 2 ms, the rest are sync).
    """

    def __init__(
        self,
        name: str = "recorder",
        delay: Callable[[], float] | None = None,
        fail: Callable[[Event, int], HandlerError | None] | None = None,
        style: str = "async",
    ) -> None:
        super().__init__(name)
        assert style in ("async", "sync", "mixed"), style
        assert not (style == "sync" and delay is not None), "a sync handler cannot wait"
        self.seen: list[tuple[str, int]] = []
        self.calls: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.delay = delay
        self.fail = fail
        self.style = style
        self.concurrent = 0
        self.max_concurrent = 0

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None] | None:
        key = (event.device_id or "", event.statuses[0].value)  # type: ignore[attr-defined]
        self.calls[key] += 1
        if self.style == "sync" or (self.style == "mixed" and key[1] % 3):
            self._settle(event, key)
            return None
        return self._handle_later(event, key)

    async def _handle_later(self, event: Event, key: tuple[str, int]) -> None:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay is not None:
                await asyncio.sleep(self.delay())
            elif self.style == "mixed":
                await asyncio.sleep(0.002)
            self._settle(event, key)
        finally:
            self.concurrent -= 1

    def _settle(self, event: Event, key: tuple[str, int]) -> None:
        if self.fail is not None:
            error = self.fail(event, self.calls[key])
            if error is not None:
                raise error
        self.seen.append(key)


def random_delay(maximum: float = 0.003) -> Callable[[], float]:
    """Reproducible random handler delays up to ``maximum`` seconds."""
    rng = random.Random(7)
    return lambda: rng.random() * maximum


class Harness:
    """A daemon on a memory source, started in the current event loop."""

    def __init__(
        self,
        settings: Settings,
        handlers: Sequence[BaseHandler | Route],
        batch_size: int = 500,
        load: Callable[[], Settings] | None = None,
    ):
        self.settings = settings
        self.source = MemorySource(poll_interval=0.02, batch_size=batch_size)
        self.store = DeadLetterStore(
            settings.dead_letter.path, settings.dead_letter.store_plaintext
        ).open()
        routes = [h if isinstance(h, Route) else Route(h) for h in handlers]
        self.daemon = Daemon(settings, self.source, routes, self.store, load=load)
        self.task: asyncio.Task[Stopped] | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.get_running_loop().create_task(self.daemon.run())
        await wait_until(lambda: self.daemon.health.started)
        return self

    def outcomes(self, handler: str, outcome: str) -> float:
        """A handler's outcome count as ``/metrics`` shows it (0 when the series is absent)."""
        return handler_outcomes(self.daemon.metrics.registry, handler, outcome)

    async def stop(self) -> int:
        """The exit code ``tuya-events run`` would give for how the daemon stopped."""
        self.daemon.request_stop()
        assert self.task is not None
        return exit_code(await self.task)

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            await self.stop()
        self.store.close()


def in_harness(
    settings: Settings,
    handlers: Sequence[BaseHandler | Route],
    scenario: Callable[[Harness], Awaitable[T]],
) -> T:
    """Run ``scenario`` against a started :class:`Harness` in a fresh event loop."""

    async def main() -> T:
        async with Harness(settings, handlers) as h:
            return await scenario(h)

    return asyncio.run(main())
