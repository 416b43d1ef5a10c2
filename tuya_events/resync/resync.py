"""A resync: the current state of the catalogue's devices, from the OpenAPI, as events.

After a gap longer than Tuya keeps messages (about two hours), what devices reported meanwhile
is lost; their *current* status is not. For every device, a batch of batch calls: the details
(to learn the online state, and renames made while we were away) and the status. Each device
then becomes one ``status`` event (and an ``online``/``offline`` event where the state changed
from what we knew), marked ``source: resync`` with the gap, and goes through the same pipeline
and handlers as live traffic. The events are encrypted like Tuya's, so a dead-lettered one
replays like any other message.

Ordering: a resync event joins its device's queue like a live message; the device's live
messages queue behind it only while it is handled, and it never waits for the OpenAPI (the calls
are made before it is submitted). The time its items carry is when the status call began: a
live report newer than that wins where the newest is kept (the database's newer-only rule).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuya_events.catalogue.catalogue import Catalogue
from tuya_events.delivery import Delivery
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.errors import OpenApiError
from tuya_events.tuya.codec import EM_ECB, TuyaEncoder
from tuya_events.tuya.devices import Device

log = get_logger("tuya_events.resync")

RESYNC_TOPIC = "tuya-events:resync"  # the topic of a resync event's delivery: nothing to ack
MARKER = "_tuya_events"
START = "start"
RECONNECT = "reconnect"
COMMAND = "command"
TRIGGERS = (START, RECONNECT, COMMAND)


class ResyncDelivery(Delivery):
    """A resync event's delivery: made here, so there is nothing to acknowledge. Told apart by
    its class (one type check per message, where reading a Pulsar message's topic costs more)."""

    __slots__ = ()


def describe_gap(seconds: float) -> str:
    """``3h12m``, ``45m``, ``20s``: how long we were away, as a person says it."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


@dataclass
class ResyncReport:
    devices: int = 0
    resynced: int = 0
    online_changes: int = 0
    calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # device id -> reason
    paused: bool = False


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class Resyncer:
    """``submit`` takes a delivery into the pipeline (after ``wait_for_capacity``)."""

    def __init__(
        self,
        catalogue: Catalogue,
        encoder: TuyaEncoder,
        submit: Callable[[Delivery], None],
        wait_for_capacity: Callable[[], Awaitable[None]],
        metrics: Metrics | None = None,
        *,
        retry_delays: Sequence[float] = (30.0, 60.0, 120.0, 300.0, 600.0),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.catalogue = catalogue
        self.encoder = encoder
        self.submit = submit
        self.wait_for_capacity = wait_for_capacity
        self.metrics = metrics
        self.retry_delays = tuple(retry_delays)
        self._wall = wall
        self.running = 0
        if metrics is not None:
            metrics.resync_running.set_function(lambda: self.running)
            for trigger in TRIGGERS:
                metrics.resync_runs.labels(trigger)
            for outcome in ("resynced", "failed"):
                metrics.resync_devices.labels(outcome)

    async def run(
        self,
        trigger: str,
        gap: float | None = None,
        device_ids: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ResyncReport:
        """Resync ``device_ids`` (default: every device in the catalogue). Devices whose calls
        failed for a reason that may pass (an outage, a timeout) are tried again after each of
        ``retry_delays``; the rest are reported as failed."""
        ids = list(dict.fromkeys(device_ids)) if device_ids else sorted(self.catalogue.devices)
        report = ResyncReport(devices=len(ids))
        if self.metrics is not None:
            self.metrics.resync_runs.labels(trigger).inc()
        if self.catalogue.directory is None:
            raise RuntimeError("a resync needs the OpenAPI")
        run_id = uuid.uuid4().hex[:12]
        calls_before = self.catalogue.calls
        self.running += 1
        try:
            pending = ids
            for delay in (*self.retry_delays, None):
                retry = await self._pass(run_id, trigger, gap, pending, report, progress)
                if not retry or delay is None or report.paused:
                    break
                log.warning(
                    "resync: some devices could not be read; trying again",
                    devices=len(retry),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                pending = retry
        finally:
            self.running -= 1
            report.calls = self.catalogue.calls - calls_before
        if self.metrics is not None:
            self.metrics.resync_devices.labels("failed").inc(len(report.failures))
        return report

    async def _pass(
        self,
        run_id: str,
        trigger: str,
        gap: float | None,
        ids: list[str],
        report: ResyncReport,
        progress: Callable[[int, int], None] | None,
    ) -> list[str]:
        """One pass over ``ids``; returns those worth another try."""
        retry: list[str] = []
        batch_size = self.catalogue.settings.batch_size
        for batch in _chunks(ids, batch_size):
            if self.catalogue.paused:
                report.paused = True
                for device_id in batch:
                    report.failures[device_id] = "paused"
                continue
            before = {d: self.catalogue.devices.get(d) for d in batch}
            started_ms = int(self._wall() * 1000)
            try:
                details = await self.catalogue.refresh_details(batch)
                statuses = await self.catalogue.directory_status(batch)
            except OpenApiError as error:
                if self.catalogue.pause_on(error):
                    report.paused = True
                for device_id in batch:
                    report.failures[device_id] = error.reason
                if error.retryable:
                    retry.extend(batch)
                continue
            for device_id in batch:
                items = statuses.get(device_id)
                if items is None:
                    report.failures[device_id] = "not_found"
                    continue
                report.failures.pop(device_id, None)
                device = details.get(device_id) or self.catalogue.devices.get(device_id)
                old = before.get(device_id)
                if (
                    device is not None
                    and device.online is not None
                    and old is not None
                    and old.online is not None
                    and old.online != device.online
                ):
                    await self._submit(
                        self._online_document(device, started_ms, gap, trigger),
                        20,
                        f"resync:{run_id}:{device_id}:online",
                        device_id,
                        started_ms,
                    )
                    report.online_changes += 1
                document = self._status_document(device_id, device, items, started_ms, gap, trigger)
                await self._submit(
                    document, 4, f"resync:{run_id}:{device_id}", device_id, started_ms
                )
                report.resynced += 1
                if self.metrics is not None:
                    self.metrics.resync_devices.labels("resynced").inc()
                if progress is not None:
                    progress(report.resynced, report.devices)
        return retry

    def _marker(self, gap: float | None, trigger: str) -> dict[str, Any]:
        marker: dict[str, Any] = {"source": "resync", "trigger": trigger}
        if gap is not None:
            marker["gap_seconds"] = round(gap, 3)
        return marker

    def _status_document(
        self,
        device_id: str,
        device: Device | None,
        items: list[dict[str, Any]],
        started_ms: int,
        gap: float | None,
        trigger: str,
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "dataId": f"resync-{started_ms}-{device_id}",
            "devId": device_id,
            "status": [
                {"code": item.get("code"), "value": item.get("value"), "t": started_ms}
                for item in items
            ],
            MARKER: self._marker(gap, trigger),
        }
        if device is not None and device.product_id:
            document["productKey"] = device.product_id
        if device is not None and device.online is not None:
            document["online"] = device.online
        return document

    def _online_document(
        self, device: Device, started_ms: int, gap: float | None, trigger: str
    ) -> dict[str, Any]:
        code = "online" if device.online else "offline"
        return {
            "devId": device.id,
            "bizCode": code,
            "bizData": {"devId": device.id, "time": started_ms // 1000},
            "ts": started_ms,
            MARKER: self._marker(gap, trigger),
        }

    async def _submit(
        self, document: dict[str, Any], protocol: int, message_id: str, key: str, t_ms: int
    ) -> None:
        body, properties = self.encoder.encode(document, em=EM_ECB, protocol=protocol, t_ms=t_ms)
        await self.wait_for_capacity()
        self.submit(
            ResyncDelivery(
                body=body,
                properties=properties,
                message_id=message_id,
                topic=RESYNC_TOPIC,
                key=key,
            )
        )
