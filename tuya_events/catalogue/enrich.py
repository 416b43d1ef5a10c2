"""Enrichment: the catalogue's knowledge put on each event, once, before routing.

The pipeline calls :class:`Enricher` once per message. A known device (the common case) costs
a dict look-up and one assignment per status item: ``name``, ``unit`` and ``scaled`` are read
from the item's data point only when someone asks. A device seen for the first time returns an
awaitable: the pipeline runs it in that device's queue, so only that device's messages wait (at
most ``enrichment.max_wait``, in order), then they go on, enriched or not. Nothing here raises
into the pipeline or fails a message: an unknown device is ``UNKNOWN_DEVICE``, never an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from tuya_events.catalogue.catalogue import DELETIONS, WATCHED, Catalogue
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.tuya.devices import UNKNOWN_DEVICE, Device
from tuya_events.tuya.events import Event, StatusReport

log = get_logger("tuya_events.catalogue")

HIT = "hit"
WAITED = "waited"
TIMED_OUT = "timed_out"
UNKNOWN = "unknown"
NO_DEVICE = "no_device"
OUTCOMES = (HIT, WAITED, TIMED_OUT, UNKNOWN, NO_DEVICE)


def apply(event: Event, device: Device) -> None:
    """Put ``device`` and each status item's data point on the event."""
    event.device = device
    if type(event) is StatusReport:
        points = device.points
        by_dp_id = device.points_by_dp_id
        for item in event.statuses:
            point = points.get(item.code)  # type: ignore[arg-type]  # None finds nothing
            if point is None and item.dp_id is not None:
                point = by_dp_id.get(item.dp_id)
            item.point = point


class Enricher:
    def __init__(self, catalogue: Catalogue, metrics: Metrics) -> None:
        self.catalogue = catalogue
        self._devices = catalogue.devices  # the same dict: the catalogue changes it in place
        self._counts = metrics.counts.enrichment
        for outcome in OUTCOMES:
            self._counts.setdefault(outcome, 0)
        self._wait_seconds = metrics.enrichment_wait

    def __call__(self, event: Event) -> Awaitable[None] | None:
        """Enrich ``event`` now (None), or return what to await before it is enriched."""
        device_id = event.device_id
        counts = self._counts
        if device_id is None:
            event.device = UNKNOWN_DEVICE
            counts[NO_DEVICE] += 1
            return None
        code = event.biz_code
        if code is not None and code in WATCHED:
            return self._watched(event, device_id, code)
        device = self._devices.get(device_id)
        if device is not None:
            apply(event, device)
            counts[HIT] += 1
            return None
        return self._unknown(event, device_id)

    def _watched(self, event: Event, device_id: str, code: str) -> Awaitable[None] | None:
        """An event that changes what we know: the catalogue learns it first, so the event
        carries the new name (a deleted device's event still says which device it was)."""
        before = self._devices.get(device_id)
        self.catalogue.observe(event)
        device = self._devices.get(device_id) or (before if code in DELETIONS else None)
        if device is not None:
            apply(event, device)
            self._counts[HIT] += 1
            return None
        if code in DELETIONS:
            event.device = UNKNOWN_DEVICE
            self._counts[UNKNOWN] += 1
            return None
        return self._unknown(event, device_id)

    def _unknown(self, event: Event, device_id: str) -> Awaitable[None] | None:
        lookup = self.catalogue.lookup(device_id)
        loop = asyncio.get_running_loop()
        if lookup is None or lookup.deadline <= loop.time():
            event.device = UNKNOWN_DEVICE
            self._counts[UNKNOWN] += 1
            return None
        return self._wait(event, device_id, lookup.done, lookup.deadline)

    async def _wait(
        self, event: Event, device_id: str, done: asyncio.Future[None], deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(asyncio.shield(done), max(0.0, deadline - started))
        except asyncio.TimeoutError:
            pass
        except Exception:  # a lookup's failure is the catalogue's to report, not the message's
            log.exception("device lookup failed", device_id=device_id)
        self._wait_seconds.observe(loop.time() - started)
        device = self._devices.get(device_id)
        if device is not None:
            apply(event, device)
            self._counts[WAITED] += 1
        else:
            event.device = UNKNOWN_DEVICE
            self._counts[TIMED_OUT if not done.done() else UNKNOWN] += 1
