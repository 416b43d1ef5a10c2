"""A handler for end-to-end tests, loaded the way users load their own: ``type: module:Class``
(``type: tests.support.recorder:FileRecorder``; the process needs the checkout on its
``PYTHONPATH``, see :func:`tests.support.paths.importable_tests_env`).

It appends one JSON line per handled event to a file (``O_APPEND`` writes, so several daemon
processes can share it and a SIGKILL loses nothing already written). It fails on request: for
listed devices, or for everything while a switch file exists.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerError
from tuya_events.tuya.events import Event, StatusReport


class FileRecorderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    delay: float = 0.0
    fail_devices: list[str] = []
    fail_switch: str | None = None
    fail_mode: Literal["permanent", "retryable", "infrastructure"] = "permanent"


class FileRecorder(BaseHandler):
    """Appends ``{device, seq, message_id, partition, redelivery, pid}`` per handled event
    (and ``name``, ``scaled`` when enrichment is on)."""

    Options = FileRecorderOptions

    def __init__(self, name: str, options: FileRecorderOptions, context: object = None) -> None:
        super().__init__(name)
        self.options = options
        self._fd: int | None = None

    async def start(self) -> None:
        self._fd = os.open(self.options.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _should_fail(self, event: Event) -> bool:
        if event.device_id in self.options.fail_devices:
            return True
        switch = self.options.fail_switch
        return switch is not None and Path(switch).exists()

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None] | None:
        """With a delay it waits (the pipeline's task path); without, it is done on return."""
        if self.options.delay:
            return self._record_later(event, delivery)
        self._record(event, delivery)
        return None

    async def _record_later(self, event: Event, delivery: Delivery) -> None:
        await asyncio.sleep(self.options.delay)
        self._record(event, delivery)

    def _record(self, event: Event, delivery: Delivery) -> None:
        if self._should_fail(event):
            mode = self.options.fail_mode
            raise HandlerError(
                "recorder_refused",
                f"{mode} failure for {event.device_id}",
                retryable=mode != "permanent",
                infrastructure=mode == "infrastructure",
            )
        first = event.statuses[0] if isinstance(event, StatusReport) and event.statuses else None
        line = {
            "device": event.device_id,
            "seq": first.value if first is not None else None,
            "message_id": delivery.message_id,
            "partition": delivery.partition,
            "redelivery": delivery.redelivery_count,
            "pid": os.getpid(),
        }
        if event.device is not None:  # enrichment is on: what it gave this event
            line["name"] = event.device.name
            line["scaled"] = first.scaled if first is not None else None
        if "_tuya_events" in event.document:  # made by the daemon: a resync event
            line["resync"] = True
        assert self._fd is not None
        os.write(self._fd, orjson.dumps(line) + b"\n")


RECORDER = "tests.support.recorder:FileRecorder"
"""The ``type:`` of this handler in a configuration."""


def read_records(path: Path) -> list[dict]:
    """Every complete line a FileRecorder wrote to ``path``, in order ([] before the first).

    Read while instances still write: a last line without its newline is being written, and
    is left for the next read.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in complete.splitlines() if line]
