"""Noticing gaps: at start (since the consumption record) and on reconnecting to the broker.

A gap longer than ``resync.after`` starts a resync in the background, with one log line that
says it plainly; live traffic goes on meanwhile. The daemon calls :meth:`GapWatcher.consuming`
while connected, :meth:`reconnected` when the connection comes back, :meth:`close` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from tuya_events.config.settings import ResyncSettings
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.errors import OpenApiError
from tuya_events.resync.record import ConsumptionRecord
from tuya_events.resync.resync import RECONNECT, START, Resyncer, describe_gap

log = get_logger("tuya_events.resync")

RETENTION_SECONDS = 2 * 3600  # how long Tuya keeps unacknowledged messages (about)


class GapWatcher:
    def __init__(
        self,
        settings: ResyncSettings,
        record: ConsumptionRecord,
        resyncer: Resyncer | None,
        metrics: Metrics,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.record = record
        self.resyncer = resyncer
        self.metrics = metrics
        self._wall = wall
        self._last_consuming = wall()
        self._tasks: set[asyncio.Task[None]] = set()

    def started(self) -> None:
        """At start: how long since we last consumed (nothing on a first start)."""
        last = self.record.last_consuming()
        if last is None:
            log.info("no record of earlier consumption: nothing to resync (a first start)")
            return
        self._gap(self._wall() - last, START)

    async def consuming(self) -> None:
        """While connected: remember it (on disk every ``record_interval``)."""
        self._last_consuming = self._wall()
        if self.record.due():
            await asyncio.to_thread(self.record.write)

    def reconnected(self) -> None:
        self._gap(self._wall() - self._last_consuming, RECONNECT)

    def _gap(self, gap: float, trigger: str) -> None:
        gap = max(0.0, gap)
        self.metrics.resync_gap.set(gap)
        self.metrics.resync_gap_at.set(self._wall())
        if gap <= self.settings.after:
            return
        if self.resyncer is None:  # measured and said, but nothing to resync with
            log.warning(
                f"away {describe_gap(gap)}: messages published meanwhile may be lost, and resync "
                "is off (resync.enabled, or enrichment.enabled for its catalogue)",
                gap_seconds=round(gap),
                trigger=trigger,
            )
            return
        devices = len(self.resyncer.catalogue.devices)
        beyond = "longer than Tuya keeps messages" if gap > RETENTION_SECONDS else (
            f"longer than resync.after ({describe_gap(self.settings.after)})"
        )  # fmt: skip
        log.warning(
            f"away {describe_gap(gap)}, {beyond}: resyncing {devices} devices",
            gap_seconds=round(gap),
            trigger=trigger,
            devices=devices,
        )
        task = asyncio.get_running_loop().create_task(self._resync(trigger, gap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync(self, trigger: str, gap: float) -> None:
        assert self.resyncer is not None
        started = time.monotonic()
        try:
            report = await self.resyncer.run(trigger, gap)
        except (OpenApiError, RuntimeError) as error:
            log.error("resync failed", trigger=trigger, error=str(error))
            return
        except Exception:  # a bug of ours must not take the daemon down with it
            log.exception("resync failed", trigger=trigger)
            return
        fields = {
            "trigger": trigger,
            "devices": report.devices,
            "resynced": report.resynced,
            "online_changes": report.online_changes,
            "failed": len(report.failures),
            "calls": report.calls,
            "seconds": round(time.monotonic() - started, 1),
        }
        if report.failures:
            log.warning("resync finished with failures", **fields, failures=report.failures)
        else:
            log.info("resync finished", **fields)

    async def close(self, connected: bool) -> None:
        """At the end: stop resyncs (what they submitted drains like the rest) and record the
        time, if we were consuming until now."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if connected:
            await asyncio.to_thread(self.record.write)
