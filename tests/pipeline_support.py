"""Helpers for driving the real daemon in-process on the in-memory source."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tests import vectors as v
from tuya_events.cli.run import exit_code
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.daemon import Daemon, Stopped
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerError
from tuya_events.pipeline.routes import Route
from tuya_events.transport.memory import MemorySource
from tuya_events.tuya.codec import TuyaEncoder
from tuya_events.tuya.events import Event

ENCODER = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)


def make_settings(tmp_path: Path, **sections: Any) -> Settings:
    tree: dict[str, Any] = {
        "tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"},
        "dead_letter": {"path": str(tmp_path / "dead-letters.sqlite3")},
        "retry": {"initial_backoff": "10ms", "max_backoff": "50ms", "max_attempts": 3},
        "http": {"enabled": False},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return settings_from_mapping(tree, {})


def status_message(
    device: str, seq: int, em: str | None = "aes_ecb"
) -> tuple[bytes, dict[str, str]]:
    document = {
        "dataId": f"{device}-{seq}",
        "devId": device,
        "productKey": "pk",
        "status": [{"code": "seq", "value": seq, "t": 1700000000000 + seq}],
    }
    return ENCODER.encode(document, em=em, protocol=4)


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
    rng = random.Random(7)
    return lambda: rng.random() * maximum


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Harness:
    """A daemon on a memory source, started in the current event loop."""

    def __init__(
        self,
        settings: Settings,
        handlers: Sequence[BaseHandler | Route],
        batch_size: int = 500,
    ):
        self.settings = settings
        self.source = MemorySource(poll_interval=0.02, batch_size=batch_size)
        self.store = DeadLetterStore(
            settings.dead_letter.path, settings.dead_letter.store_plaintext
        ).open()
        routes = [h if isinstance(h, Route) else Route(h) for h in handlers]
        self.daemon = Daemon(settings, self.source, routes, self.store)
        self.task: asyncio.Task[Stopped] | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.get_running_loop().create_task(self.daemon.run())
        await wait_until(lambda: self.daemon.health.started)
        return self

    def outcomes(self, handler: str, outcome: str) -> float:
        """A handler's outcome count as ``/metrics`` shows it (0 when the series is absent)."""
        labels = {"handler": handler, "outcome": outcome}
        value = self.daemon.metrics.registry.get_sample_value(
            "tuya_events_handler_outcomes_total", labels
        )
        return value or 0.0

    async def stop(self) -> int:
        """The exit code ``tuya-events run`` would give for how the daemon stopped."""
        self.daemon.request_stop()
        assert self.task is not None
        return exit_code(await self.task)

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            await self.stop()
        self.store.close()
