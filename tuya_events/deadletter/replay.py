"""``tuya-events dlq replay``: run dead-lettered messages through the same pipeline again.

A record that now succeeds is deleted; one that fails again stays, with its attempts and last
failure updated. A record from a failed handler replays that handler only; a record from the
decode stage replays every handler the event is routed to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tuya_events.assembly import build_pipeline, enrichment, guarded_routes, started_handlers
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import Settings
from tuya_events.deadletter.filters import RecordFilter
from tuya_events.deadletter.store import DeadLetterStore
from tuya_events.delivery import Delivery
from tuya_events.handlers import HandlerContext
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.progress import ProgressBar
from tuya_events.observability.redact import REDACTOR
from tuya_events.pipeline.pipeline import HANDLER_STAGE
from tuya_events.pipeline.routes import build_routes


@dataclass
class ReplayResult:
    selected: int = 0
    replayed: int = 0
    failed_again: int = 0
    skipped: int = 0  # the handler that failed is no longer configured

    @property
    def exit_code(self) -> int:
        return 1 if self.failed_again or self.skipped else 0


def replay_records(
    settings: Settings, store: DeadLetterStore, filters: RecordFilter | None, progress: bool
) -> ReplayResult:
    REDACTOR.add(secret_values(settings))
    return asyncio.run(_replay(settings, store, filters, progress))


async def _replay(
    settings: Settings, store: DeadLetterStore, filters: RecordFilter | None, progress: bool
) -> ReplayResult:
    result = ReplayResult(selected=store.count(filters))
    meter = ProgressBar("replay", result.selected, progress)
    metrics = Metrics()
    context = HandlerContext(settings, metrics)
    routes = guarded_routes(settings, build_routes(settings, context), metrics)
    configured = {route.name for route in routes}
    record_of: dict[int, int] = {}  # id(delivery) -> record id

    def acknowledge(delivery: Delivery, dead_lettered: bool) -> None:
        record_id = record_of.pop(id(delivery))
        if dead_lettered:
            result.failed_again += 1
        else:
            store.delete(record_id)
            result.replayed += 1
        meter.show(result.replayed + result.failed_again + result.skipped)

    pipeline = build_pipeline(settings, routes, store, acknowledge, metrics)
    async with enrichment(settings, context, pipeline), started_handlers(routes):
        for record in store.iter(filters):
            only = record.handler if record.stage == HANDLER_STAGE else None
            if only is not None and only not in configured:
                result.skipped += 1
                continue
            await pipeline.wait_for_capacity()
            delivery = record.to_delivery()
            record_of[id(delivery)] = record.id
            pipeline.submit(delivery, only_handler=only)
        await pipeline.join()
    meter.show(result.replayed + result.failed_again + result.skipped, final=True)
    return result
